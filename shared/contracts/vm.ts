import { z } from "zod";
import {
  DeviceCounts,
  ErrorInfo,
  HypervisorKind,
  Labels,
  Name,
  OpAction,
  OpStatus,
  VmAction,
  VmNetwork,
  VmState,
} from "./common.ts";

/** What a VM is made of. Shared by single VMs, cluster members and agent commands. */
export const VmSpec = z.strictObject({
  vcpus: z.number().int().min(1).max(512),
  memoryMiB: z
    .number()
    .int()
    .min(16)
    .max(16 * 1024 * 1024),
  /** Base image to overlay (copy-on-write) on the host; diskless when absent. */
  image: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/)
    .optional(),
  /** Hypervisor kind required; any when absent. */
  hypervisor: HypervisorKind.optional(),
  /** Devices required, by model (GPUs and the like). */
  devices: DeviceCounts.optional(),
});
export type VmSpec = z.infer<typeof VmSpec>;

/** VM ids a placement constraint names (of the same project: others' VMs count as not placed). */
const VmIds = z.array(z.string().min(1).max(64)).min(1).max(16);

/**
 * Where a VM may go, besides what its spec needs. Never part of the spec (which travels to agents).
 * Group names belong to the project: another project's group of the same name is another group.
 */
export const Placement = z
  .strictObject({
    /** Labels the host must carry, with exactly these values. */
    requiredLabels: Labels.optional(),
    /** Hard affinity: on the host holding the group's other members (the first goes where it fits). */
    affinityGroup: Name.optional(),
    /** Hard anti-affinity: never on a host holding another member of this group. */
    antiAffinityGroup: Name.optional(),
    /** Soft affinity: next to the group's members when the policy's weighers allow. */
    softAffinityGroup: Name.optional(),
    /** On the one host holding all of these VMs; nowhere while they are apart or not placed. */
    sameHostAs: VmIds.optional(),
    /** On no host holding any of these VMs. */
    differentHostFrom: VmIds.optional(),
  })
  .meta({ id: "Placement" });
export type Placement = z.infer<typeof Placement>;

export const CreateVm = VmSpec.extend({
  name: Name,
  labels: Labels.optional(),
  /** Site to place the VM in; the deployment's default site when absent. */
  site: Name.optional(),
  /** Placement constraints (labels, groups, other VMs); none when absent. */
  placement: Placement.optional(),
  /** Lifetime asked for, in seconds from placement (leases plugin); never part of the VM's spec. */
  leaseSeconds: z.number().int().min(1).optional(),
}).meta({ id: "CreateVm" });
export type CreateVm = z.infer<typeof CreateVm>;

export const Vm = z
  .object({
    id: z.string(),
    name: z.string(),
    project: z.string(),
    owner: z.string(),
    clusterId: z.string().nullable(),
    site: z.string(),
    spec: VmSpec,
    labels: Labels,
    state: VmState,
    hostId: z.string().nullable(),
    /** Address and VLAN from the IP manager plugin while the VM holds a home host; null otherwise. */
    network: VmNetwork.nullable(),
    placement: Placement.nullable(),
    /** When the VM's lease runs out (leases plugin); null when it has none. */
    leaseExpiresAt: z.string().nullable(),
    version: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: "Vm" });
export type Vm = z.infer<typeof Vm>;

export const Operation = z
  .object({
    id: z.string(),
    vmId: z.string(),
    action: OpAction,
    args: z.record(z.string(), z.unknown()),
    status: OpStatus,
    requester: z.string(),
    project: z.string(),
    requestId: z.string(),
    idempotencyKey: z.string().nullable(),
    attempts: z.number().int(),
    seq: z.number().int(),
    /** How far a long operation (a migration) has got, as the agent last reported. */
    progressPercent: z.number().nullable(),
    deadline: z.string(),
    hostId: z.string().nullable(),
    error: ErrorInfo.nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
    finishedAt: z.string().nullable(),
  })
  .meta({ id: "Operation" });
export type Operation = z.infer<typeof Operation>;

export const VmActionRequest = z
  .strictObject({
    action: VmAction,
    /** Admin only: where to migrate (or start) the VM. */
    targetHostId: z.string().min(1).max(64).optional(),
    /** Live migration (default true). */
    live: z.boolean().optional(),
  })
  .meta({ id: "VmActionRequest" });
export type VmActionRequest = z.infer<typeof VmActionRequest>;

export const CreateVmResponse = z.object({ vm: Vm, operation: Operation }).meta({ id: "CreateVmResponse" });
export const OperationResponse = z.object({ operation: Operation }).meta({ id: "OperationResponse" });

export const Page = <T extends z.ZodType>(item: T) =>
  z.object({ items: z.array(item), nextCursor: z.string().nullable() });
export const VmList = Page(Vm).meta({ id: "VmList" });
export const OperationList = Page(Operation).meta({ id: "OperationList" });
