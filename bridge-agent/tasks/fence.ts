/**
 * The `fence` task: power a failed host off out of band, so the control plane can restart its VMs
 * elsewhere without two copies ever running. Reports `{ fenced: true }` only when the host's fence
 * action succeeded (its command, then its verify command, exited 0); anything else throws, so the
 * task is delivered again until `taskMaxAttempts` and then reported failed. Running it again is
 * harmless: powering off a host that is off succeeds.
 */
import { SimDriver } from "../drivers/sim.ts";
import { LocalRunner } from "../transport/local.ts";
import type { TaskContext, TaskHandler } from "./types.ts";

export const FenceErrorCode = {
  /** The task names a host this agent does not drive. */
  hostUnknown: "host_unknown",
  /** The host has no fence configured (kvm, xen). */
  unavailable: "fence_unavailable",
  /** The fence command (or its verification) exited non-zero, could not start, or timed out. */
  failed: "fence_failed",
} as const;

const fail = (code: string, message: string) => Object.assign(new Error(message), { code });

export const fence: TaskHandler = async (task, ctx) => {
  const host = ctx.config.hosts.find((h) => h.id === task.hostId);
  if (!host)
    throw fail(FenceErrorCode.hostUnknown, `host ${task.hostId ?? "(none)"} is not driven by this agent`);
  if (host.fence) {
    const env = {
      ...process.env,
      USHER_FENCE_HOST_ID: host.id,
      USHER_FENCE_HOST_ADDRESS: host.address,
      USHER_FENCE_TASK_ID: task.taskId,
    };
    const timeoutMs = host.fence.timeoutSeconds * 1000;
    await run("fence", host.fence.argv, { env, timeoutMs, hostId: host.id }, ctx);
    if (host.fence.verifyArgv)
      await run("verify", host.fence.verifyArgv, { env, timeoutMs, hostId: host.id }, ctx);
    ctx.log.warn("host fenced", { hostId: host.id, method: "command" });
    return { fenced: true, method: "command", verified: !!host.fence.verifyArgv };
  }
  const driver = ctx.drivers.get(host.id);
  if (driver instanceof SimDriver) {
    await driver.powerOff();
    ctx.log.warn("host fenced", { hostId: host.id, method: "sim-power-off" });
    return { fenced: true, method: "sim-power-off", verified: true };
  }
  throw fail(FenceErrorCode.unavailable, `host ${host.id} has no fence configured`);
};

async function run(
  what: "fence" | "verify",
  argv: readonly string[],
  opts: { env: NodeJS.ProcessEnv; timeoutMs: number; hostId: string },
  ctx: TaskContext,
): Promise<void> {
  // No shell: argv goes to the program as it is in the config.
  const runner = new LocalRunner({ hostId: opts.hostId, env: opts.env });
  try {
    const r = await runner.run(argv, { timeoutMs: opts.timeoutMs, signal: ctx.signal });
    if (r.code !== 0) {
      const said = (r.stderr.trim() || r.stdout.trim()).slice(-500);
      throw fail(FenceErrorCode.failed, `${what} command exited ${r.code}${said ? `: ${said}` : ""}`);
    }
  } catch (err) {
    if ((err as { code?: unknown }).code === FenceErrorCode.failed) throw err;
    throw fail(FenceErrorCode.failed, `${what} command failed: ${(err as Error).message}`);
  } finally {
    await runner.close();
  }
}
