import { z } from "zod";
import { DeviceCounts, ErrorInfo, HostState, HypervisorKind, Labels, Name } from "./common.ts";

export const HostCapacity = z.strictObject({
  vcpus: z.number().int().min(1).max(100_000),
  memoryMiB: z
    .number()
    .int()
    .min(64)
    .max(1024 * 1024 * 1024),
  devices: DeviceCounts.optional(),
});
export type HostCapacity = z.infer<typeof HostCapacity>;

/** Overcommit: how many virtual units each physical unit may carry. Devices are never overcommitted. */
export const AllocationRatios = z.strictObject({
  cpu: z.number().min(0.1).max(64).default(1),
  memory: z.number().min(0.1).max(4).default(1),
});
export type AllocationRatios = z.infer<typeof AllocationRatios>;

export const Allocated = z.object({
  vcpus: z.number().int(),
  memoryMiB: z.number().int(),
  devices: DeviceCounts,
});
export type Allocated = z.infer<typeof Allocated>;

/** One VM still holding capacity on a draining host. */
export const DrainVm = z.object({
  vmId: z.string(),
  /** The drain's migration of this VM, once submitted. */
  opId: z.string().nullable(),
  /**
   * `pending`: its migration is about to be submitted (by the sweep); `migrating`: under way;
   * `failed`: the migration failed (drain again to retry); `blocked`: not migrated (a stopped or
   * suspended VM, or the request was refused: `error` says why); `arriving`: a migration to this
   * host is finishing first.
   */
  status: z.enum(["pending", "migrating", "failed", "blocked", "arriving"]),
  error: ErrorInfo.nullable(),
});
export type DrainVm = z.infer<typeof DrainVm>;

/** Progress of a drain (`GET /v1/hosts/{id}`). The host becomes `drained` when `remaining` is 0. */
export const HostDrain = z
  .object({
    requestId: z.string(),
    requestedBy: z.string(),
    requestedAt: z.string(),
    finishedAt: z.string().nullable(),
    /** VMs still holding capacity on the host. */
    remaining: z.number().int(),
    /** Of those, how many failed or are blocked. */
    failures: z.number().int(),
    vms: z.array(DrainVm),
  })
  .meta({ id: "HostDrain" });
export type HostDrain = z.infer<typeof HostDrain>;

/**
 * `fence_failed`: the fence failed, timed out, or the host showed running guests before anything was
 * restarted (nothing moved; the host is `down` again). `fence_breached`: the host showed running
 * guests after restarts began: restarts stop, and copies of VMs already restarted elsewhere are purged
 * from it by the agent.
 */
export const EvacuationStatus = z.enum([
  "fencing",
  "fence_failed",
  "awaiting_confirmation",
  "evacuating",
  "done",
  "fence_breached",
]);
export type EvacuationStatus = z.infer<typeof EvacuationStatus>;

/** One VM the evacuation moved off the fenced host. */
export const EvacuatedVm = z.object({
  vmId: z.string(),
  /** The `start` that restarts it elsewhere; null when it was left stopped (see `note`). */
  restartOpId: z.string().nullable(),
  /** The operation that was under way on the fenced host and was failed (`host_fenced`). */
  failedOpId: z.string().nullable(),
  note: z.string(),
  at: z.string(),
});
export type EvacuatedVm = z.infer<typeof EvacuatedVm>;

/** Progress of an evacuation (`GET /v1/hosts/{id}`): fence first, then restarts elsewhere. */
export const HostEvacuation = z
  .object({
    status: EvacuationStatus,
    requestId: z.string(),
    requestedBy: z.string(),
    requestedAt: z.string(),
    /** The fence task sent to the site's agent. */
    taskId: z.string(),
    fencedAt: z.string().nullable(),
    confirmedBy: z.string().nullable(),
    confirmedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
    /** Why fencing failed (`fence_failed`): nothing was restarted. */
    error: ErrorInfo.nullable(),
    /** VMs (or migration targets) still holding capacity on the host. */
    remaining: z.number().int(),
    vms: z.array(EvacuatedVm),
  })
  .meta({ id: "HostEvacuation" });
export type HostEvacuation = z.infer<typeof HostEvacuation>;

export const Host = z
  .object({
    id: z.string(),
    site: z.string(),
    kind: HypervisorKind,
    address: z.string(),
    capacity: HostCapacity,
    ratios: AllocationRatios,
    /** The most that may be allocated: floor(capacity × ratio). */
    limits: Allocated,
    allocated: Allocated,
    labels: Labels,
    state: HostState,
    lastHeartbeatAt: z.string().nullable(),
    /** The latest drain, with its progress (on a single host's read). */
    drain: HostDrain.nullable().optional(),
    /** The latest evacuation, with its progress (on a single host's read). */
    evacuation: HostEvacuation.nullable().optional(),
    version: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: "Host" });
export type Host = z.infer<typeof Host>;

/** Host address: a DNS name or an IP, optionally with a port; validated so it is safe on a command line. */
export const HostAddress = z.string().regex(/^[A-Za-z0-9.:[\]-]{1,255}$/);

export const CreateHost = z
  .strictObject({
    id: Name,
    site: Name,
    kind: HypervisorKind,
    address: HostAddress,
    capacity: HostCapacity,
    ratios: AllocationRatios.optional(),
    labels: Labels.optional(),
    state: HostState.optional(),
  })
  .meta({ id: "CreateHost" });
export type CreateHost = z.infer<typeof CreateHost>;

export const PatchHost = z
  .strictObject({
    /** Maintenance states are reached through their own requests (`…/drain`, `…/evacuate`). */
    state: HostState.extract(["enabled", "disabled"]).optional(),
    ratios: AllocationRatios.partial().optional(),
    labels: Labels.optional(),
    address: HostAddress.optional(),
    capacity: HostCapacity.optional(),
  })
  .meta({ id: "PatchHost" });
export type PatchHost = z.infer<typeof PatchHost>;

export const HostList = z
  .object({ items: z.array(Host), nextCursor: z.string().nullable() })
  .meta({ id: "HostList" });
