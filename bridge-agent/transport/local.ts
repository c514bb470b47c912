/**
 * A `CommandRunner` for this machine: argv goes straight to the program (`child_process.spawn`, no
 * shell), so no argument is ever interpreted. For a hypervisor host that is the agent's own machine,
 * and for tests, where `env` can put a stand-in tool (e.g. an `xl` that answers like the real one)
 * first on PATH without the driver knowing.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:os";
import type { CommandRunner, RunOptions, RunResult } from "./runner.ts";

export const RunnerErrorCode = {
  /** `timeoutMs` passed; the command was killed. */
  timeout: "timeout",
  /** The signal aborted; the command was killed. */
  aborted: "aborted",
  /** The program could not be started (not found, not executable). */
  spawnFailed: "spawn_failed",
  /** The runner was closed. */
  closed: "closed",
  /** The argv is empty or holds a NUL byte. */
  badArgv: "bad_argv",
} as const;
export type RunnerErrorCode = (typeof RunnerErrorCode)[keyof typeof RunnerErrorCode];

export class RunnerError extends Error {
  override name = "RunnerError";
  readonly code: RunnerErrorCode;
  constructor(code: RunnerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

export type LocalRunnerOptions = {
  /** The host this runner stands for. */
  hostId: string;
  /** Environment of every command; the agent's own when absent. */
  env?: NodeJS.ProcessEnv;
  /** Working folder of every command; the agent's own when absent. */
  cwd?: string;
  /** After a timeout, abort or close: time between SIGTERM and SIGKILL (default 2000). */
  killGraceMs?: number;
};

export class LocalRunner implements CommandRunner {
  readonly hostId: string;
  private readonly opts: LocalRunnerOptions;
  /** Commands still running, with how to stop each. */
  private readonly running = new Map<ChildProcess, (err: RunnerError) => void>();
  private closed = false;

  constructor(opts: LocalRunnerOptions) {
    this.opts = opts;
    this.hostId = opts.hostId;
  }

  run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const [program, ...args] = argv;
    if (this.closed) return Promise.reject(new RunnerError("closed", `runner for ${this.hostId} is closed`));
    if (!program || argv.some((a) => a.includes("\0"))) {
      return Promise.reject(new RunnerError("bad_argv", `refusing argv ${JSON.stringify(argv)}`));
    }
    if (opts.signal?.aborted) {
      return Promise.reject(new RunnerError("aborted", `${program} aborted`, { cause: opts.signal.reason }));
    }
    return new Promise((resolve, reject) => {
      const child = spawn(program, args, {
        stdio: ["pipe", "pipe", "pipe"],
        shell: false,
        ...(this.opts.env ? { env: this.opts.env } : {}),
        ...(this.opts.cwd ? { cwd: this.opts.cwd } : {}),
      });
      let stdout = "";
      let stderr = "";
      let failure: RunnerError | undefined;
      let settled = false;
      let killTimer: NodeJS.Timeout | undefined;

      const stop = (err: RunnerError) => {
        if (failure) return;
        failure = err;
        child.kill("SIGTERM");
        killTimer = setTimeout(() => child.kill("SIGKILL"), this.opts.killGraceMs ?? 2000);
      };
      this.running.set(child, stop);
      const timer =
        opts.timeoutMs === undefined
          ? undefined
          : setTimeout(
              () => stop(new RunnerError("timeout", `${program} timed out after ${opts.timeoutMs} ms`)),
              opts.timeoutMs,
            );
      const onAbort = () =>
        stop(new RunnerError("aborted", `${program} aborted`, { cause: opts.signal?.reason }));
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(killTimer);
        opts.signal?.removeEventListener("abort", onAbort);
        this.running.delete(child);
        fn();
      };

      child.stdout?.setEncoding("utf8");
      child.stderr?.setEncoding("utf8");
      child.stdout?.on("data", (chunk: string) => {
        stdout += chunk;
      });
      child.stderr?.on("data", (chunk: string) => {
        stderr += chunk;
        try {
          opts.onStderr?.(chunk);
        } catch {
          // a failing progress callback must not break the command
        }
      });
      child.stdin?.on("error", () => {}); // EPIPE: the command exited without reading all of stdin
      child.stdin?.end(opts.stdin ?? "");

      child.on("error", (err) => {
        finish(() =>
          reject(
            failure ??
              new RunnerError("spawn_failed", `cannot run ${program}: ${err.message}`, { cause: err }),
          ),
        );
      });
      child.on("close", (code, signal) => {
        finish(() => {
          if (failure) return reject(failure);
          // Killed by someone else: report it as a shell would, 128 + the signal's number.
          const exit = code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
          resolve({ code: exit, stdout, stderr });
        });
      });
    });
  }

  /** Stops taking commands and ends those still running. Safe to call twice. */
  async close(): Promise<void> {
    this.closed = true;
    for (const stop of this.running.values())
      stop(new RunnerError("closed", `runner for ${this.hostId} closed`));
  }
}
