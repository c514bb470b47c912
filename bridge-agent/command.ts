/**
 * One command message, from receipt to deletion: verify the signature (refuse, log and delete what
 * the control plane did not sign for this site), report `running`, execute while keeping the message
 * hidden, report the outcome, then delete. The message is deleted only once the final result is on
 * the results queue; otherwise SQS redelivers it and the idempotent executor runs it again.
 */
import { decodeJwt } from "jose";
import { type AgentCommand, type AgentResult, resultOf } from "../shared/contracts/index.ts";
import type { Logger } from "../shared/log.ts";
import { verifyAgentMessage } from "../shared/signing/index.ts";
import type { AgentConfig } from "./config.ts";
import type { HypervisorDriver } from "./drivers/driver.ts";
import { AgentErrorCode } from "./errors.ts";
import { execute } from "./executor.ts";
import type { Reporter } from "./reporter.ts";
import type { ReceivedMessage, Sqs } from "./sqs.ts";
import { handleTask } from "./tasks/handle.ts";
import { TASK_HANDLERS } from "./tasks/registry.ts";

/** A command being worked on; `stop()` may hand it back to the queue. */
export type InFlight = {
  msg: ReceivedMessage;
  /** Aborts the operation (agent stopping). */
  abort: AbortController;
  /** Set when the command was handed back: no result is sent and the message is not deleted. */
  handedBack: boolean;
};

export type CommandDeps = {
  config: AgentConfig;
  sqs: Sqs;
  reporter: Reporter;
  drivers: ReadonlyMap<string, HypervisorDriver>;
  controlPlaneKey: CryptoKey;
  logger: Logger;
  /** Operations being executed now, by id: a re-sent command for one of them is not run twice. */
  activeOps: Set<string>;
};

export async function handleCommand(op: InFlight, deps: CommandDeps): Promise<void> {
  const { config, logger } = deps;
  const msg = op.msg;
  let cmd: AgentCommand;
  try {
    const verified = await verifyAgentMessage(msg.body, deps.controlPlaneKey, config.site);
    if (verified.kind === "task") return handleTask(op, verified.task, deps, TASK_HANDLERS);
    cmd = verified.cmd;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    logger.warn("command refused", {
      messageId: msg.messageId,
      receiveCount: msg.receiveCount,
      reason,
      ...claimed(msg.body),
    });
    await deleteMessage(msg, deps, logger);
    return;
  }
  const log = logger.child({ requestId: cmd.requestId, opId: cmd.opId, vmId: cmd.vmId, hostId: cmd.hostId });
  const base = resultOf(cmd);
  log.info("command accepted", { action: cmd.action, attempt: cmd.attempt, receiveCount: msg.receiveCount });

  const driver = deps.drivers.get(cmd.hostId);
  if (!driver) {
    log.warn("command for a host this agent does not drive");
    const error = {
      code: AgentErrorCode.hostUnknown,
      message: `host ${cmd.hostId} is not driven by agent ${config.agentId}`,
    };
    await finish({ ...base, status: "failed", error, at: new Date().toISOString() }, op, deps, log);
    return;
  }

  if (deps.activeOps.has(cmd.opId)) {
    // The control plane re-sent a command still running here; the running one will report.
    log.info("duplicate command for an operation in progress dropped");
    await deleteMessage(msg, deps, log);
    return;
  }
  deps.activeOps.add(cmd.opId);
  const keepAlive = keepHidden(op, deps, log);
  // `running`, only once the operation has run for a while: one that ends sooner is reported once.
  // Informational: the operation goes on even if it cannot be sent (the final result matters).
  const running: AgentResult = { ...base, status: "running", at: new Date().toISOString() };
  let runningSent: Promise<unknown> | undefined;
  const sendRunning = () => {
    runningSent ??= deps.reporter.send({ ...running, at: new Date().toISOString() }, log, 2).then((ok) => {
      if (!ok) log.warn("running report not sent; going on");
    });
    return runningSent;
  };
  const runningTimer = setTimeout(sendRunning, config.runningReportAfterSeconds * 1000);
  try {
    let reported = 0;
    const onProgress = (percent: number) => {
      if (percent >= 100 || percent < reported + 25) return; // a report per quarter is plenty
      reported = percent;
      // After the `running` report, so the control plane sees them in order.
      void sendRunning().then(() => {
        const progress: AgentResult = { ...running, progressPercent: percent, at: new Date().toISOString() };
        return deps.reporter.send(progress, log, 1);
      });
    };
    const result = await execute(cmd, driver, {
      guestShutdownTimeoutMs: config.guestShutdownTimeoutSeconds * 1000,
      signal: op.abort.signal,
      onProgress,
    });
    if (op.handedBack) {
      log.warn("operation interrupted by stop; command handed back", { hypervisorMs: result.hypervisorMs });
      return;
    }
    const { status, powerState, error, hypervisorMs } = result;
    log.info("command done", { action: cmd.action, status, powerState, error, hypervisorMs });
    clearTimeout(runningTimer);
    await runningSent; // a `running` already on its way goes first
    await finish(result, op, deps, log);
  } finally {
    clearTimeout(runningTimer);
    clearInterval(keepAlive);
    deps.activeOps.delete(cmd.opId);
  }
}

/** Sends the final result, then deletes the message; a result not sent leaves it for redelivery. */
async function finish(result: AgentResult, op: InFlight, deps: CommandDeps, log: Logger): Promise<void> {
  if (!(await deps.reporter.send(result, log))) {
    log.error("result not sent; command left on the queue for redelivery", { status: result.status });
    return;
  }
  await deleteMessage(op.msg, deps, log);
}

/** Extends the message's visibility every half timeout while the operation runs. */
function keepHidden(op: InFlight, deps: CommandDeps, log: Logger): NodeJS.Timeout {
  const seconds = deps.config.visibilityTimeoutSeconds;
  return setInterval(() => {
    if (op.handedBack) return;
    deps.sqs
      .changeVisibility(deps.config.sqs.commandQueueUrl, op.msg.receiptHandle, seconds)
      .then(() => log.debug("visibility extended", { seconds }))
      .catch((err) => log.warn("visibility not extended", { err }));
  }, seconds * 500);
}

/** What a refused message claims to be (unverified, for grepping logs by requestId), if it says. */
function claimed(body: string): Record<string, unknown> {
  try {
    const cmd = (decodeJwt(body) as { cmd?: Record<string, unknown> }).cmd ?? {};
    const { requestId, opId, vmId, hostId, site } = cmd;
    return { claimed: { requestId, opId, vmId, hostId, site } };
  } catch {
    return {};
  }
}

async function deleteMessage(msg: ReceivedMessage, deps: CommandDeps, log: Logger): Promise<void> {
  try {
    await deps.sqs.delete(deps.config.sqs.commandQueueUrl, msg.receiptHandle);
  } catch (err) {
    // The message comes back after its visibility timeout; running it again is harmless.
    log.warn("command message not deleted", { messageId: msg.messageId, err });
  }
}
