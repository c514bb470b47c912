import { z } from "zod";
import { DeviceCounts, HostState, HypervisorKind, Labels, Name } from "./common.ts";

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
    state: HostState.optional(),
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
