/**
 * One task message: run its handler, report the outcome, delete the message. A failure leaves the
 * message for SQS to deliver again (after the visibility timeout) until the agent's
 * `taskMaxAttempts`, and only then is reported failed, so a flaky DNS server or fence device gets
 * several tries without the control plane having to resend.
 */
import type { AgentTask, TaskResult } from "../../shared/contracts/index.ts";
import type { Logger } from "../../shared/log.ts";
import type { CommandDeps, InFlight } from "../command.ts";
import type { TaskHandler } from "./types.ts";

export async function handleTask(
  op: InFlight,
  task: AgentTask,
  deps: CommandDeps,
  handlers: Readonly<Record<AgentTask["kind"], TaskHandler>>,
): Promise<void> {
  const log = deps.logger.child({
    taskId: task.taskId,
    requestId: task.requestId,
    kind: task.kind,
    plugin: task.plugin,
  });
  const base = {
    type: "task_result",
    taskId: task.taskId,
    requestId: task.requestId,
    site: task.site,
    kind: task.kind,
    plugin: task.plugin,
    event: task.event,
    hostId: task.hostId,
  } as const;
  const attempt = op.msg.receiveCount;
  log.info("task accepted", { event: task.event, attempt });
  let result: TaskResult;
  try {
    if (Date.parse(task.deadline) <= Date.now()) throw new Error("the task's deadline passed before it ran");
    const data = await handlers[task.kind](task, {
      config: deps.config,
      drivers: deps.drivers,
      log,
      signal: op.abort.signal,
    });
    result = { ...base, ok: true, ...(data ? { data } : {}), at: new Date().toISOString() };
    log.info("task done", { data });
  } catch (err) {
    if (op.handedBack) return;
    const code =
      typeof (err as { code?: unknown }).code === "string" ? (err as { code: string }).code : "task_failed";
    const error = { code, message: (err as Error).message ?? String(err) };
    if (attempt < deps.config.taskMaxAttempts) {
      log.warn("task failed; left for another delivery", { attempt, error });
      return;
    }
    log.error("task failed; giving up", { attempt, error });
    // The VM it concerned, if any, so the control plane files the failure on that VM's events.
    const vmId = typeof task.payload.vmId === "string" ? { vmId: task.payload.vmId } : {};
    result = {
      ...base,
      ok: false,
      error,
      data: { attempts: attempt, ...vmId },
      at: new Date().toISOString(),
    };
  }
  await report(result, op, deps, log);
}

async function report(result: TaskResult, op: InFlight, deps: CommandDeps, log: Logger): Promise<void> {
  if (!(await deps.reporter.send(result, log))) {
    log.error("task result not sent; left on the queue for redelivery");
    return;
  }
  try {
    await deps.sqs.delete(deps.config.sqs.commandQueueUrl, op.msg.receiptHandle);
  } catch (err) {
    log.warn("task message not deleted", { err });
  }
}
