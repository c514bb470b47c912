import { z } from "zod";
import { ErrorInfo, Labels, Name, VmAction } from "./common.ts";
import { Operation, Placement, Vm, VmSpec } from "./vm.ts";

/** A scheduler policy's name: a built-in (`pack`, `spread`, `load`, `power-saving`) or the site's. */
export const PolicyName = z.string().regex(/^[a-z][a-z0-9_-]{0,39}$/, "a policy name");

/**
 * VMs one cluster request may create: its members are created in one DynamoDB transaction and placed
 * in another (100 items at most each); the gang's is the larger (see shared/services/clusters.ts).
 */
export const MAX_CLUSTER_VMS = 24;

/** One group of alike members in a virtual cluster (a head node, or N workers). */
export const ClusterMember = VmSpec.extend({
  count: z.number().int().min(1).max(MAX_CLUSTER_VMS),
  /** Members are named `<cluster>-<role>-<n>`; `node` when absent. */
  role: Name.optional(),
  labels: Labels.optional(),
  /** Placement constraints for each of these members (give them one antiAffinityGroup to spread them). */
  placement: Placement.optional(),
});
export type ClusterMember = z.infer<typeof ClusterMember>;

const ClusterBase = z.strictObject({
  name: Name,
  site: Name.optional(),
  labels: Labels.optional(),
  /** The scheduler policy for this cluster's members; the project's (or the site's default) when absent. */
  policy: PolicyName.optional(),
  /** Lifetime asked for each member, in seconds from its placement (leases plugin). */
  leaseSeconds: z.number().int().min(1).optional(),
});

/** Usher's `start` of many VMs: N alike (`count` + spec) or a mix (`members`). */
export const CreateCluster = z
  .union([
    ClusterBase.extend({
      members: z
        .array(ClusterMember.omit({ labels: true }).extend({ labels: Labels.optional() }))
        .min(1)
        .max(20)
        .refine((ms) => ms.reduce((n, m) => n + m.count, 0) <= MAX_CLUSTER_VMS, {
          message: `a cluster request holds at most ${MAX_CLUSTER_VMS} VMs`,
        }),
    }),
    ClusterBase.extend(VmSpec.shape).extend({
      count: z.number().int().min(1).max(MAX_CLUSTER_VMS),
      placement: Placement.optional(),
    }),
  ])
  .meta({ id: "CreateCluster" });
export type CreateCluster = z.infer<typeof CreateCluster>;

export const Cluster = z
  .object({
    id: z.string(),
    name: z.string(),
    project: z.string(),
    owner: z.string(),
    site: z.string(),
    vmIds: z.array(z.string()),
    policy: PolicyName.nullable(),
    /** The members' placement together (all or none); null for clusters made before gangs. */
    gang: z
      .object({ status: z.enum(["pending", "placed", "failed"]), error: ErrorInfo.nullable() })
      .nullable(),
    createdAt: z.string(),
  })
  .meta({ id: "Cluster" });
export type Cluster = z.infer<typeof Cluster>;

export const ClusterDetail = Cluster.extend({ vms: z.array(Vm) }).meta({ id: "ClusterDetail" });
export const CreateClusterResponse = z
  .object({ cluster: Cluster, vms: z.array(Vm), operations: z.array(Operation) })
  .meta({ id: "CreateClusterResponse" });
export const ClusterActionRequest = z
  .strictObject({ action: VmAction, live: z.boolean().optional() })
  .meta({ id: "ClusterActionRequest" });
export const ClusterActionResponse = z
  .object({ operations: z.array(Operation) })
  .meta({ id: "ClusterActionResponse" });
export const ClusterList = z
  .object({ items: z.array(Cluster), nextCursor: z.string().nullable() })
  .meta({ id: "ClusterList" });
