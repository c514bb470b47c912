/**
 * Key layout of the single table. Every item has `pk`, `sk` and `type`; listings use the overloaded
 * GSIs. See docs/state.md for the full picture and which writes are conditional.
 */
export const pad = (n: number) => n.toString().padStart(10, "0");

export const keys = {
  host: (id: string) => ({ pk: `HOST#${id}`, sk: "HOST" }),
  /** All hosts, ordered by site then id: `gsi1pk = HOSTS`, `gsi1sk = <site>#<id>`. */
  hostIndex: (site: string, id: string) => ({ gsi1pk: "HOSTS", gsi1sk: `${site}#${id}` }),
  /** A capacity claim: one per VM per host, in the host's partition. */
  claim: (hostId: string, vmId: string) => ({ pk: `HOST#${hostId}`, sk: `CLAIM#${vmId}` }),
  /** What a drain did about one VM, in the host's partition. */
  drainVm: (hostId: string, drainId: string, vmId: string) => ({
    pk: `HOST#${hostId}`,
    sk: `DRAIN#${drainId}#${vmId}`,
  }),
  /** What an evacuation (named by its fence task) did about one VM, in the host's partition. */
  evacuatedVm: (hostId: string, taskId: string, vmId: string) => ({
    pk: `HOST#${hostId}`,
    sk: `EVAC#${taskId}#${vmId}`,
  }),

  vm: (id: string) => ({ pk: `VM#${id}`, sk: "VM" }),
  vmIndex: (project: string, id: string) => ({ gsi1pk: `PROJ#${project}#VM`, gsi1sk: id }),
  vmClusterIndex: (clusterId: string, id: string) => ({ gsi2pk: `CLUSTER#${clusterId}`, gsi2sk: id }),
  /** Reserves a VM name in a project. */
  vmName: (project: string, name: string) => ({ pk: `VMNAME#${project}#${name}`, sk: "VMNAME" }),

  cluster: (id: string) => ({ pk: `CLUSTER#${id}`, sk: "CLUSTER" }),
  clusterIndex: (project: string, id: string) => ({ gsi1pk: `PROJ#${project}#CLUSTER`, gsi1sk: id }),
  clusterName: (project: string, name: string) => ({
    pk: `CLUSTERNAME#${project}#${name}`,
    sk: "CLUSTERNAME",
  }),

  op: (id: string) => ({ pk: `OP#${id}`, sk: "OP" }),
  /** A VM's operations in submission order. */
  opVmIndex: (vmId: string, seq: number) => ({ gsi1pk: `VMOPS#${vmId}`, gsi1sk: pad(seq) }),
  /** Sparse: only operations that are not terminal, ordered by deadline. The sweep reads it. */
  opOpenIndex: (deadline: string, id: string) => ({ gsi2pk: "OPEN", gsi2sk: `${deadline}#${id}` }),

  /** Append-only events live in the partition of what they are about (`VM#`, `HOST#`, `CLUSTER#`). */
  event: (subjectPk: string, eventId: string) => ({ pk: subjectPk, sk: `EV#${eventId}` }),
  eventProjectIndex: (project: string, eventId: string) => ({
    gsi1pk: `PROJ#${project}#EV`,
    gsi1sk: eventId,
  }),

  /** Sparse: events with notifications still to deliver, by when the next attempt is due. */
  notifyIndex: (dueAt: string, eventId: string) => ({ gsi2pk: "NOTIFY", gsi2sk: `${dueAt}#${eventId}` }),

  idempotency: (scope: string, key: string) => ({ pk: `IDEM#${scope}#${key}`, sk: "IDEM" }),
} as const;

export type Key = { pk: string; sk: string };
