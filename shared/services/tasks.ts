/**
 * Agent tasks: work for a site's agent that is not a VM operation (an on-premise plugin, fencing a
 * host). Reports on them come back on the results queue and are routed here by kind.
 */
import type { TaskResult } from "../contracts/messages.ts";
import { transact } from "../store/base.ts";
import type { Deps } from "./context.ts";
import { eventItem } from "./events.ts";

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

const TASK_RESULTS: Record<TaskResult["kind"], TaskResultHandler> = {
  plugin: recordPluginResult,
  fence: async (deps, site, r) => {
    deps.log.warn("fence report with no handler yet", { site, taskId: r.taskId });
  },
};

export async function recordTaskResult(deps: Deps, site: string, r: TaskResult): Promise<void> {
  await TASK_RESULTS[r.kind](deps, site, r);
}
