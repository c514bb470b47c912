/**
 * One command on one SSH channel: output collection, standard input, exit status, and stopping it
 * (timeout, abort, runner close) by killing it on the host.
 */
import { constants } from "node:os";
import type { Client, ClientChannel } from "ssh2";
import { DriverError, DriverErrorCode } from "../drivers/errors.ts";
import type { RunOptions, RunResult } from "./runner.ts";
import { connectionLost, execError } from "./ssh-errors.ts";
import { type KillTarget, killCommandLine, PidLineReader } from "./ssh-wrap.ts";

export type ExecContext = {
  hostId: string;
  /** After TERM, how long before KILL and giving up on the channel. */
  killGraceMs: number;
  /** Frees the channel slot; called once the channel is closed (or never opened). */
  release: () => void;
  /** Registers the command's stop with the runner (for close()); returns the unregister. */
  track: (stop: (why: DriverError) => void) => () => void;
};

/** Runs the (wrapped) command line `line` for `argv` on its own channel of `client`. */
export function execCommand(
  client: Client,
  line: string,
  argv: readonly string[],
  opts: RunOptions,
  ctx: ExecContext,
): Promise<RunResult> {
  const { signal, timeoutMs, onStderr } = opts;
  return new Promise<RunResult>((resolve, reject) => {
    let settled = false;
    let timeoutTimer: NodeJS.Timeout | undefined;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      clearTimeout(timeoutTimer);
      fn();
    };
    // Until the channel is open, stopping only means failing; afterwards it also kills (see below).
    let stop = (why: DriverError) => settle(() => reject(why));
    const onAbort = () => stop(aborted(ctx.hostId, signal!));
    signal?.addEventListener("abort", onAbort, { once: true });

    const onChannel = (err: Error | undefined, ch: ClientChannel) => {
      if (err) {
        ctx.release();
        return settle(() => reject(execError(ctx.hostId, err)));
      }
      let stdout = "";
      let stderr = "";
      let exit: { code: number | null; signal?: string } | undefined;
      const pidLine = new PidLineReader();
      let stopping = false;
      let closed = false;
      let killTimer: NodeJS.Timeout | undefined;

      const emitStderr = (text: string) => {
        if (text === "") return;
        stderr += text;
        try {
          onStderr?.(text);
        } catch {
          // a failing progress callback must not break the command
        }
      };
      const term = () => {
        if (pidLine.pid !== undefined) killLane(client).kill({ pid: pidLine.pid, signal: "TERM" });
      };
      const kill = () => {
        term(); // without a pid yet, TERM goes out when the pid arrives
        killTimer = setTimeout(() => {
          if (closed) return;
          if (pidLine.pid !== undefined) killLane(client).kill({ pid: pidLine.pid, signal: "KILL" });
          ch.close();
        }, ctx.killGraceMs);
      };

      ch.setEncoding("utf8");
      ch.stderr.setEncoding("utf8");
      ch.on("data", (chunk: string) => {
        stdout += chunk;
      });
      ch.stderr.on("data", (chunk: string) => {
        const hadPid = pidLine.pid !== undefined;
        emitStderr(pidLine.push(chunk));
        if (!hadPid && pidLine.pid !== undefined && stopping) term();
      });
      ch.on("exit", (code: number | null, sig?: string) => {
        exit = { code, ...(sig ? { signal: sig } : {}) };
      });
      ch.on("close", () => {
        closed = true;
        untrack();
        clearTimeout(killTimer);
        ctx.release();
        emitStderr(pidLine.flush());
        if (exit) settle(() => resolve({ code: exitCode(exit!), stdout, stderr }));
        // No exit status: the connection dropped under the command (if it was stopped, settled already).
        else {
          const why = `while running ${argv[0]} (it may or may not have completed)`;
          settle(() => reject(connectionLost(ctx.hostId, why)));
        }
      });

      stop = (why) => {
        settle(() => reject(why));
        if (stopping || closed) return;
        stopping = true;
        kill();
      };
      const untrack = ctx.track((why) => stop(why));
      // Aborted (or the runner closed) while the channel was opening: the command must not run on.
      if (settled) stop(aborted(ctx.hostId, signal));
      if (timeoutMs !== undefined && !settled) {
        timeoutTimer = setTimeout(() => {
          const msg = `${argv[0]} on ${ctx.hostId} did not finish within ${timeoutMs} ms; it was killed`;
          stop(new DriverError(DriverErrorCode.timeout, msg));
        }, timeoutMs);
      }
      // Always end standard input, so a command that reads it sees EOF instead of waiting forever.
      if (opts.stdin !== undefined) ch.end(opts.stdin, "utf8");
      else ch.end();
    };

    try {
      client.exec(line, onChannel);
    } catch (err) {
      // ssh2 throws "Not connected" when the socket is gone but its close is not processed yet
      ctx.release();
      settle(() => reject(execError(ctx.hostId, err)));
    }
  });
}

export function aborted(hostId: string, signal: AbortSignal | undefined): DriverError {
  return new DriverError(DriverErrorCode.aborted, `command on ${hostId} aborted`, { cause: signal?.reason });
}

/** A signal-killed command reports 128 + the signal number, as shells do. */
function exitCode(exit: { code: number | null; signal?: string }): number {
  if (exit.code !== null) return exit.code;
  const n = exit.signal ? constants.signals[exit.signal as keyof typeof constants.signals] : undefined;
  return n === undefined ? 255 : 128 + n;
}

/**
 * Kills go out over one extra channel per connection at a time, batched: they bypass the channel
 * cap (a kill must not wait behind the commands it stops) yet add at most one session beyond
 * maxChannels, whatever the number of commands being stopped. Best effort: outcomes are ignored.
 */
class KillLane {
  private readonly client: Client;
  private queue: KillTarget[] = [];
  private busy = false;

  constructor(client: Client) {
    this.client = client;
  }

  kill(target: KillTarget): void {
    this.queue.push(target);
    if (!this.busy) this.flush();
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    this.busy = true;
    const done = () => {
      this.busy = false;
      this.flush();
    };
    try {
      this.client.exec(killCommandLine(batch), (err, ch) => {
        if (err) return done();
        ch.resume();
        ch.stderr.resume();
        ch.once("close", done);
        ch.end();
      });
    } catch {
      done(); // not connected: the commands' channels are going away with the connection
    }
  }
}

const lanes = new WeakMap<Client, KillLane>();

function killLane(client: Client): KillLane {
  let lane = lanes.get(client);
  if (!lane) {
    lane = new KillLane(client);
    lanes.set(client, lane);
  }
  return lane;
}
