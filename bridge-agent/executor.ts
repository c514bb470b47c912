/**
 * Runs one verified command on one host's driver and says how it went, as an AgentResult. Never
 * throws: driver errors become a failed result with `{ code, message }`. Safe to run twice for one
 * command (drivers are idempotent), which is what makes redelivery harmless.
 */
import { type AgentCommand, type AgentResult, type PowerState, resultOf } from "../shared/contracts/index.ts";
import type { HypervisorDriver, OpOptions } from "./drivers/driver.ts";
import { DriverError, DriverErrorCode } from "./drivers/errors.ts";
import { AgentError, AgentErrorCode, toErrorInfo } from "./errors.ts";

export type ExecuteContext = {
  /** How long a guest may take to power off on ACPI before shutdown forces it. */
  guestShutdownTimeoutMs: number;
  /** Aborts the operation (the agent is stopping). */
  signal?: AbortSignal;
  /** Migration progress, 0..100. */
  onProgress?: (percent: number) => void;
};

/** Executes `cmd` on `driver`, cancelling it when `cmd.deadline` passes. */
export async function execute(
  cmd: AgentCommand,
  driver: HypervisorDriver,
  ctx: ExecuteContext,
): Promise<AgentResult> {
  const base = resultOf(cmd);
  const deadline = new AbortController();
  const timer = setTimeout(
    () => deadline.abort(new AgentError(AgentErrorCode.deadlineExceeded, `deadline ${cmd.deadline} passed`)),
    // Clamped to what setTimeout takes (~24.8 days); beyond that Node fires it at once.
    Math.min(2 ** 31 - 1, Math.max(0, Date.parse(cmd.deadline) - Date.now())),
  );
  const signal = ctx.signal ? AbortSignal.any([deadline.signal, ctx.signal]) : deadline.signal;
  const t0 = performance.now();
  const elapsed = () => Math.round(performance.now() - t0);
  try {
    const powerState = await untilAborted(run(cmd, driver, { opId: cmd.opId, signal }, ctx), signal);
    const finalHostId = cmd.action === "migrate" && cmd.target ? cmd.target.hostId : cmd.hostId;
    return { ...base, status: "succeeded", powerState, finalHostId, hypervisorMs: elapsed(), at: now() };
  } catch (err) {
    const hypervisorMs = elapsed();
    if (signal.aborted) {
      const reason = signal.reason instanceof AgentError ? signal.reason : toAbortError(signal.reason);
      return { ...base, status: "failed", error: toErrorInfo(reason), hypervisorMs, at: now() };
    }
    const powerState =
      err instanceof DriverError ? await driver.domainState(cmd.vmId).catch(() => undefined) : undefined;
    return {
      ...base,
      status: "failed",
      error: toErrorInfo(err),
      hypervisorMs,
      at: now(),
      ...(powerState ? { powerState } : {}),
    };
  } finally {
    clearTimeout(timer);
  }
}

function run(
  cmd: AgentCommand,
  d: HypervisorDriver,
  opts: OpOptions,
  ctx: ExecuteContext,
): Promise<PowerState> {
  const vmId = cmd.vmId;
  const needs = (capability: keyof HypervisorDriver["capabilities"]) => {
    if (!d.capabilities[capability]) {
      throw new DriverError(DriverErrorCode.notSupported, `${d.kind} host ${d.hostId} cannot ${cmd.action}`);
    }
  };
  switch (cmd.action) {
    case "start":
      return d.start(
        {
          vmId,
          vmName: cmd.vmName,
          opId: cmd.opId,
          spec: cmd.spec,
          ...(cmd.network ? { network: cmd.network } : {}),
        },
        opts,
      );
    case "shutdown":
      return d.shutdown(vmId, { ...opts, timeoutMs: ctx.guestShutdownTimeoutMs });
    case "destroy":
    case "delete": // destroy here; the control plane unregisters the VM when it records the result
      return d.destroy(vmId, opts);
    case "reboot":
      needs("reboot");
      return d.reboot(vmId, opts);
    case "cycle":
      return d.cycle(vmId, opts);
    case "pause":
      needs("pause");
      return d.pause(vmId, opts);
    case "unpause":
      needs("pause");
      return d.unpause(vmId, opts);
    case "suspend":
      needs("suspend");
      return d.suspend(vmId, opts);
    case "resume":
      needs("suspend");
      return d.resume(vmId, opts);
    case "migrate": {
      if (!cmd.target) throw new AgentError(AgentErrorCode.validation, "migrate needs a target");
      const live = cmd.live ?? true;
      if (live) needs("liveMigration");
      return d.migrate(vmId, cmd.target, {
        ...opts,
        live,
        ...(ctx.onProgress ? { onProgress: ctx.onProgress } : {}),
      });
    }
  }
}

/** Rejects as soon as `signal` aborts, even if the driver ignores the signal. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  work.catch(() => {}); // a late rejection after the abort is expected, not unhandled
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function toAbortError(reason: unknown): AgentError {
  return new AgentError(AgentErrorCode.stopping, "the agent stopped before the operation completed", {
    cause: reason,
  });
}

const now = () => new Date().toISOString();
