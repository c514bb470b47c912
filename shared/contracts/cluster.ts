import { z } from "zod";
import { Labels, Name, VmAction } from "./common.ts";
import { Operation, Vm, VmSpec } from "./vm.ts";

/** One group of alike members in a virtual cluster (a head node, or N workers). */
export const ClusterMember = VmSpec.extend({
  count: z.number().int().min(1).max(100),
  /** Members are named `<cluster>-<role>-<n>`; `node` when absent. */
  role: Name.optional(),
  labels: Labels.optional(),
});
export type ClusterMember = z.infer<typeof ClusterMember>;

const ClusterBase = z.strictObject({ name: Name, site: Name.optional(), labels: Labels.optional() });

/** Usher's `start` of many VMs: N alike (`count` + spec) or a mix (`members`). */
export const CreateCluster = z
  .union([
    ClusterBase.extend({
      members: z
        .array(ClusterMember.omit({ labels: true }).extend({ labels: Labels.optional() }))
        .min(1)
        .max(20),
    }),
    ClusterBase.extend(VmSpec.shape).extend({ count: z.number().int().min(1).max(100) }),
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
