/** Which plugin notifications an event of the log raises. */
import type { NotifyEvent } from "./types.ts";

const BY_TYPE: Record<string, NotifyEvent> = {
  "host.registered": "register",
  "host.unregistered": "unregister",
  "host.down": "host_down",
  "lease.expiring": "lease_expiring",
  "lease.expired": "lease_expired",
};

/**
 * `op.succeeded` → the action's name, `op.failed` → `<action>_failure`; an event whose data carries
 * `state: { from, to }` with a change → also `state_change`; one whose data names `leftHome` (the VM
 * gave up its home host in that transaction) → also `vm_released`; host and lease events by name.
 */
export function noticeEvents(type: string, data: Record<string, unknown> | undefined): NotifyEvent[] {
  const out: NotifyEvent[] = [];
  const action = typeof data?.action === "string" ? data.action : undefined;
  if (type === "op.succeeded" && action) out.push(action as NotifyEvent);
  else if (type === "op.failed" && action) out.push(`${action}_failure` as NotifyEvent);
  else if (BY_TYPE[type]) out.push(BY_TYPE[type]);
  const state = data?.state as { from?: unknown; to?: unknown } | undefined;
  if (state && typeof state === "object" && state.to !== undefined && state.from !== state.to)
    out.push("state_change");
  if (typeof data?.leftHome === "string") out.push("vm_released");
  return out;
}
