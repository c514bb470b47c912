import { z } from "zod";

/** Hypervisor kinds a host can run. `sim` is the in-memory simulated hypervisor. */
export const HypervisorKind = z.enum(["kvm", "xen", "sim"]);
export type HypervisorKind = z.infer<typeof HypervisorKind>;

/** A VM's power/lifecycle state as the control plane records it. */
export const VmState = z.enum([
  "pending",
  "starting",
  "running",
  "paused",
  "suspended",
  "stopping",
  "stopped",
  "migrating",
  "error",
  "destroyed",
]);
export type VmState = z.infer<typeof VmState>;

/** Actions a caller may request on one VM (Usher's operations). */
export const VmAction = z.enum([
  "start",
  "shutdown",
  "destroy",
  "cycle",
  "reboot",
  "pause",
  "unpause",
  "suspend",
  "resume",
  "migrate",
]);
export type VmAction = z.infer<typeof VmAction>;

/** Every action an operation can carry: the public ones plus `delete` (destroy and unregister). */
export const OpAction = z.enum([...VmAction.options, "delete"]);
export type OpAction = z.infer<typeof OpAction>;

export const OpStatus = z.enum([
  "queued",
  "scheduling",
  "dispatched",
  "running",
  "succeeded",
  "failed",
  "cancelled",
]);
export type OpStatus = z.infer<typeof OpStatus>;

export const TERMINAL_OP_STATUSES: readonly OpStatus[] = ["succeeded", "failed", "cancelled"];

/**
 * A host's state. Only `enabled` hosts take new placements. `draining` → `drained` (POST …/drain);
 * `down`: its agent stopped reporting it; `fencing` → `fenced` (POST …/evacuate): being, then
 * confirmed, powered off out of band, its VMs restarted elsewhere. Back to `enabled` by an admin.
 */
export const HostState = z.enum(["enabled", "disabled", "draining", "drained", "down", "fencing", "fenced"]);
export type HostState = z.infer<typeof HostState>;

export const Role = z.enum(["admin", "operator", "user"]);
export type Role = z.infer<typeof Role>;

/** Names users give things: DNS-label-like, so they are safe in hostnames, logs and command lines. */
export const Name = z
  .string()
  .min(1)
  .max(63)
  .regex(
    /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/,
    "lowercase letters, digits and '-', not starting or ending with '-'",
  );

/** Devices by model, e.g. `{ "nvidia-a100": 2 }`. */
export const DeviceCounts = z.record(
  z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "device models are letters, digits, _ and -"),
  z.number().int().min(0).max(1024),
);
export type DeviceCounts = z.infer<typeof DeviceCounts>;

export const Labels = z.record(z.string().regex(/^[a-z0-9][a-z0-9./_-]{0,62}$/), z.string().max(128));
export type Labels = z.infer<typeof Labels>;

/** An error with a stable code, as stored on operations and returned to callers. */
export const ErrorInfo = z.object({
  code: z.string(),
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
});
export type ErrorInfo = z.infer<typeof ErrorInfo>;

/** RFC 9457 problem details, with Usher's stable `code`. */
export const Problem = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    instance: z.string().optional(),
    code: z.string(),
    requestId: z.string().optional(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .meta({ id: "Problem" });
export type Problem = z.infer<typeof Problem>;

export const Timestamp = z.iso.datetime();

/** A VM's address on its network, as the IP manager allocated it; reaches the driver for the NIC. */
export const VmNetwork = z
  .object({
    /** The named range it came from. */
    range: z.string(),
    address: z.ipv4(),
    prefixLength: z.number().int().min(8).max(30),
    gateway: z.ipv4().optional(),
    /** 802.1Q tag of the range's network, if any. */
    vlan: z.number().int().min(1).max(4094).optional(),
  })
  .meta({ id: "VmNetwork" });
export type VmNetwork = z.infer<typeof VmNetwork>;
