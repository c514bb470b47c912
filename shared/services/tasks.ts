/**
 * Agent tasks: work for a site's agent that is not a VM operation (an on-premise plugin, fencing a
 * host). Reports on them come back on the results queue and are routed here by kind.
 */
import type { AgentTask, TaskResult } from "../contracts/messages.ts";
import { newId } from "../ids.ts";
import { signTask } from "../signing/envelopes.ts";
import { transact } from "../store/base.ts";
import type { Deps } from "./context.ts";
import { recordFenceResult } from "./evacuate.ts";
import { eventItem } from "./events.ts";

/** Default life of a task: the agent refuses it after this (a stale fence or DNS update is dangerous). */
const TASK_TTL_SECONDS = 600;

/**
 * Signs a task and sends it on the site's agent queue. Throws `queue_send_failed` when SQS refuses,
 * so a notification outbox that called this retries it.
 */
export async function sendTask(
  deps: Deps,
  input: Omit<AgentTask, "taskId" | "deadline" | "payload"> &
    Partial<Pick<AgentTask, "taskId" | "deadline" | "payload">>,
): Promise<AgentTask> {
  const task: AgentTask = {
    ...input,
    taskId: input.taskId ?? newId("task"),
    payload: input.payload ?? {},
    deadline: input.deadline ?? new Date(deps.now().getTime() + TASK_TTL_SECONDS * 1000).toISOString(),
  };
  await deps.queues.sendCommand(task.site, await signTask(task, deps.signer));
  deps.log.info("task sent", {
    taskId: task.taskId,
    kind: task.kind,
    plugin: task.plugin,
    site: task.site,
    requestId: task.requestId,
  });
  return task;
}

type TaskResultHandler = (deps: Deps, site: string, r: TaskResult) => Promise<void>;

/** An agent-side plugin's outcome goes to the event log of what it was about (a VM, else the site). */
async function recordPluginResult(deps: Deps, site: string, r: TaskResult): Promise<void> {
  const vmId = typeof r.data?.vmId === "string" ? r.data.vmId : undefined;
  const log = deps.log.child({ taskId: r.taskId, requestId: r.requestId, plugin: r.plugin, site });
  if (r.ok) log.info("agent plugin task done", { event: r.event });
  else log.warn("agent plugin task failed", { event: r.event, error: r.error });
  await transact(deps.db, [
    eventItem(deps, {
      subjectPk: vmId ? `VM#${vmId}` : `SITE#${site}`,
      type: r.ok ? "plugin.succeeded" : "plugin.failed",
      requestId: r.requestId,
      data: { taskId: r.taskId, plugin: r.plugin, event: r.event, ...(r.error ? { error: r.error } : {}) },
    }),
  ]);
}

/** A purge of a stray copy (see evacuate.ts): recorded on the VM, loudly when it failed. */
async function recordPurgeResult(deps: Deps, site: string, r: TaskResult): Promise<void> {
  const vmId = typeof r.data?.vmId === "string" ? r.data.vmId : undefined;
  const log = deps.log.child({ taskId: r.taskId, requestId: r.requestId, hostId: r.hostId, site, vmId });
  if (r.ok) log.warn("stray copy purged from a fenced host");
  else log.error("stray copy NOT purged from a fenced host: check it by hand", { error: r.error });
  await transact(deps.db, [
    eventItem(deps, {
      subjectPk: vmId ? `VM#${vmId}` : `HOST#${r.hostId ?? "-"}`,
      type: r.ok ? "vm.stray_purged" : "vm.stray_purge_failed",
      requestId: r.requestId,
      data: { taskId: r.taskId, hostId: r.hostId, ...(r.error ? { error: r.error } : {}) },
    }),
  ]);
}

const TASK_RESULTS: Record<TaskResult["kind"], TaskResultHandler> = {
  plugin: recordPluginResult,
  // A fence's outcome moves its host's evacuation on (or back to down); see evacuate.ts.
  fence: (deps, site, r) => recordFenceResult(deps, site, r),
  purge: recordPurgeResult,
};

export async function recordTaskResult(deps: Deps, site: string, r: TaskResult): Promise<void> {
  await TASK_RESULTS[r.kind](deps, site, r);
}
