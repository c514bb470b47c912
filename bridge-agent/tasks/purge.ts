/**
 * The `purge` task: removes the domain of a VM from a host that should hold none. Sent when a fenced
 * host shows a running copy of a VM the evacuation already restarted elsewhere (its fence did not
 * hold): the copy here is the stray one. Destroy is idempotent, so a redelivery is harmless, and a
 * domain already gone is success.
 */
import type { TaskHandler } from "./types.ts";

export const PurgeErrorCode = {
  /** The task names a host this agent does not drive, or no VM. */
  invalidTask: "invalid_task",
} as const;

const fail = (code: string, message: string) => Object.assign(new Error(message), { code });

export const purge: TaskHandler = async (task, ctx) => {
  const driver = task.hostId ? ctx.drivers.get(task.hostId) : undefined;
  if (!driver)
    throw fail(PurgeErrorCode.invalidTask, `host ${task.hostId ?? "(none)"} is not driven by this agent`);
  const vmId = task.payload.vmId;
  if (typeof vmId !== "string" || vmId === "") throw fail(PurgeErrorCode.invalidTask, "purge names no vmId");
  // A DriverError (host_unreachable, …) carries its code into the report; the task is delivered again.
  const powerState = await driver.destroy(vmId, { signal: ctx.signal });
  ctx.log.warn("stray domain purged", { hostId: driver.hostId, vmId, taskId: task.taskId });
  return { vmId, purged: true, powerState };
};
