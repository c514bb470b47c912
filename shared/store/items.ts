/**
 * Item shapes as stored, and their public views. Internal bookkeeping (sequence numbers, free
 * capacity counters) stays here and never reaches the API.
 */

import type { Cluster } from "../contracts/cluster.ts";
import type {
  DeviceCounts,
  ErrorInfo,
  HostState,
  HypervisorKind,
  Labels,
  OpAction,
  OpStatus,
  VmNetwork,
  VmState,
} from "../contracts/common.ts";
import type { AllocationRatios, EvacuationStatus, Host, HostCapacity } from "../contracts/host.ts";
import type { Operation, Placement, Vm, VmSpec } from "../contracts/vm.ts";

export type VmItem = {
  type: "vm";
  id: string;
  name: string;
  project: string;
  owner: string;
  clusterId?: string;
  site: string;
  spec: VmSpec;
  labels: Labels;
  state: VmState;
  /** Host holding this VM's capacity claim; absent when it holds none. */
  hostId?: string;
  /** Placement constraints as asked (group names unscoped; the scheduler scopes them by project). */
  placement?: Placement;
  /** During a migration: the host holding the second claim. */
  migrationHostId?: string;
  /** Address and VLAN from the IP manager plugin, while the VM holds a home host. */
  network?: VmNetwork;
  /** Expiry of the VM's lease (leases plugin; the lease item is `LEASE#<vmId>`), while it has one. */
  leaseExpiresAt?: string;
  /** Sequence number of the last operation submitted for this VM. */
  opSeq: number;
  /** Sequence number of the last operation that finished; operation `doneSeq + 1` may run. */
  doneSeq: number;
  version: number;
  createdAt: string;
  updatedAt: string;
};

export type OpItem = {
  type: "op";
  id: string;
  vmId: string;
  action: OpAction;
  args: Record<string, unknown>;
  status: OpStatus;
  requester: string;
  project: string;
  requestId: string;
  /** The Idempotency-Key the request carried, if any. */
  idempotencyKey?: string;
  site: string;
  attempts: number;
  seq: number;
  progressPercent?: number;
  deadline: string;
  hostId?: string;
  error?: ErrorInfo;
  createdAt: string;
  updatedAt: string;
  finishedAt?: string;
};

export type HostItem = {
  type: "host";
  id: string;
  site: string;
  kind: HypervisorKind;
  address: string;
  capacity: HostCapacity;
  ratios: AllocationRatios;
  /** floor(capacity × ratio); devices are never overcommitted. */
  limitVcpus: number;
  limitMemoryMiB: number;
  limitDevices: DeviceCounts;
  /** What may still be claimed. Claims decrement these under a `>=` condition; releases add back. */
  freeVcpus: number;
  freeMemoryMiB: number;
  freeDevices: DeviceCounts;
  labels: Labels;
  state: HostState;
  /** While `down`: the state to restore when the host reports again. */
  stateBeforeDown?: HostState;
  lastHeartbeatAt?: string;
  /** The agent's latest report on the host (shared/services/results.ts). */
  inventory?: InventorySummary;
  /** The latest drain (shared/services/drain.ts). */
  drain?: DrainRecord;
  /** The latest evacuation (shared/services/evacuate.ts). */
  evacuation?: EvacuationRecord;
  /** Bumped by claims, releases and every change. */
  version: number;
  /**
   * Bumped by every change an admin makes (patchHost); absent until the first. A claim requires it
   * unchanged since its placement read the host, so a decision over labels (or anything else a filter
   * reads that the claim's counters and state do not check) is never made on stale settings.
   */
  settingsVersion?: number;
  createdAt: string;
  updatedAt: string;
};

export type InventorySummary = {
  reachable: boolean;
  /** How many domains the host holds, Usher's or not. */
  domains: number;
  free?: { vcpus: number; memoryMiB: number } | undefined;
  /** CPU load as a fraction of the host's CPUs (the load-aware weigher's input). */
  load?: number | undefined;
  error?: ErrorInfo | undefined;
  /** When the agent took the inventory. */
  at: string;
};

export type DrainRecord = {
  /** Names this drain's per-VM items (`DRAIN#<id>#<vmId>` in the host's partition). */
  id: string;
  requestId: string;
  requestedBy: string;
  requestedAt: string;
  finishedAt?: string;
};

/** What a drain did about one VM: the migration it submitted (the latest), or why it could not. */
export type DrainVmItem = {
  type: "drain_vm";
  hostId: string;
  drainId: string;
  vmId: string;
  opId?: string;
  refused?: ErrorInfo;
  updatedAt: string;
};

/** What an evacuation did about one VM, written with the release of its claim. */
export type EvacuatedVmItem = {
  type: "evacuated_vm";
  hostId: string;
  /** The evacuation's fence task id. */
  taskId: string;
  vmId: string;
  restartOpId?: string;
  failedOpId?: string;
  note: string;
  at: string;
};

export type EvacuationRecord = {
  status: EvacuationStatus;
  requestId: string;
  requestedBy: string;
  requestedAt: string;
  /** The fence task; only its report counts. */
  taskId: string;
  /** After this (plus the deadline grace) without a report, the fence has failed. */
  fenceDeadline: string;
  fencedAt?: string;
  /** What the agent reported doing. */
  fence?: Record<string, unknown>;
  confirmedBy?: string;
  confirmedAt?: string;
  finishedAt?: string;
  error?: ErrorInfo;
};

export type ClaimItem = {
  type: "claim";
  hostId: string;
  vmId: string;
  opId: string;
  vcpus: number;
  memoryMiB: number;
  devices: DeviceCounts;
  createdAt: string;
};

export type ClusterItem = {
  type: "cluster";
  id: string;
  name: string;
  project: string;
  owner: string;
  site: string;
  vmIds: string[];
  /** The scheduler policy asked for at creation; the project's (or the site's default) when absent. */
  policy?: string;
  /** The members' placement together, all or none (absent on clusters made before gangs). */
  gang?: GangRecord;
  createdAt: string;
};

/** A cluster's gang placement: pending until one scheduler decides it, once, for every member. */
export type GangRecord = {
  status: "pending" | "placed" | "failed";
  /** Each member's first start operation (by VM id): those are the starts the gang decides. */
  ops: Record<string, string>;
  /** Why no member was placed (`failed`): every member's first start fails with it. */
  error?: ErrorInfo;
  decidedAt?: string;
};

export function vmView(item: VmItem): Vm {
  return {
    id: item.id,
    name: item.name,
    project: item.project,
    owner: item.owner,
    clusterId: item.clusterId ?? null,
    site: item.site,
    spec: item.spec,
    labels: item.labels ?? {},
    state: item.state,
    hostId: item.hostId ?? null,
    placement: item.placement ?? null,
    network: item.network ?? null,
    leaseExpiresAt: item.leaseExpiresAt ?? null,
    version: item.version,
    createdAt: item.createdAt,
    updatedAt: item.updatedAt,
  };
}

export function opView(item: OpItem): Operation {
  return {
    id: item.id,
    vmId: item.vmId,
    action: item.action,
    args: item.args ?? {},
    status: item.status,
    requester: item.requester,
    project: item.project,
    requestId: item.requestId,
    idempotencyKey: item.idempotencyKey ?? null,
    attempts: item.attempts,
    seq: item.seq,
    progressPercent: item.progressPercent ?? null,
    deadline: item.deadline,
    hostId: item.hostId ?? null,
    error: item.error ?? null,
    createdAt: item.createdAt,
    updatedAt: item.updatedAt,
    finishedAt: item.finishedAt ?? null,
  };
}

export function hostView(item: HostItem): Host {
  const devices: DeviceCounts = {};
  for (const [model, limit] of Object.entries(item.limitDevices ?? {}))
    devices[model] = limit - (item.freeDevices?.[model] ?? 0);
  return {
    id: item.id,
    site: item.site,
    kind: item.kind,
    address: item.address,
    capacity: item.capacity,
    ratios: item.ratios,
    limits: { vcpus: item.limitVcpus, memoryMiB: item.limitMemoryMiB, devices: item.limitDevices ?? {} },
    allocated: {
      vcpus: item.limitVcpus - item.freeVcpus,
      memoryMiB: item.limitMemoryMiB - item.freeMemoryMiB,
      devices,
    },
    labels: item.labels ?? {},
    state: item.state,
    lastHeartbeatAt: item.lastHeartbeatAt ?? null,
    version: item.version,
    createdAt: item.createdAt,
    updatedAt: item.updatedAt,
  };
}

export function clusterView(item: ClusterItem): Cluster {
  return {
    id: item.id,
    name: item.name,
    project: item.project,
    owner: item.owner,
    site: item.site,
    vmIds: item.vmIds,
    policy: item.policy ?? null,
    gang: item.gang ? { status: item.gang.status, error: item.gang.error ?? null } : null,
    createdAt: item.createdAt,
  };
}

/** Limits from capacity and ratios. */
export function limitsOf(capacity: HostCapacity, ratios: AllocationRatios) {
  return {
    limitVcpus: Math.floor(capacity.vcpus * ratios.cpu),
    limitMemoryMiB: Math.floor(capacity.memoryMiB * ratios.memory),
    limitDevices: { ...(capacity.devices ?? {}) },
  };
}
