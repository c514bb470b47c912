/**
 * Child processes of the local stack: spawned in a process group of their own, their output handed
 * on line by line, and ended by pid (SIGTERM to the group, SIGKILL after a grace period).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { createInterface } from "node:readline";

/** Receives every output line of every child, tagged with the child's name. */
export type LineSink = (source: string, line: string) => void;

export type ExitInfo = { code: number | null; signal: NodeJS.Signals | null };

export type Child = {
  readonly name: string;
  readonly pid: number;
  /** Resolves once the process has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  /** Whether the process is still running. */
  running(): boolean;
  /** The last lines it wrote, for error messages. */
  tail(): string[];
  /** SIGTERM to its process group, SIGKILL after `graceMs`; resolves after exit. Safe to call twice. */
  stop(graceMs?: number): Promise<void>;
};

export type SpawnChildOptions = {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  sink?: LineSink;
};

const TAIL_LINES = 30;
const DEFAULT_GRACE_MS = 5_000;

/** Every child still running, so an exiting parent can take them down with it. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when the parent exits without calling stop() (a crash, a test runner tearing down):
  // 'exit' handlers must be synchronous, so this can only send SIGKILL and not wait.
  process.on("exit", () => {
    for (const cp of live) if (cp.pid) killGroup(cp.pid, "SIGKILL");
  });
}

/** Sends `signal` to the process group led by `pid` (children are spawned detached, so pgid = pid). */
function killGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    // ESRCH: the group is gone. Fall back to the pid alone in case it left its group.
    try {
      process.kill(pid, signal);
      return true;
    } catch {
      return false;
    }
  }
}

/** Whether any process is left in the group led by `pid`. */
export function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether a process with this pid exists. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Spawns a child in its own process group; throws if it cannot be spawned at all. */
export function spawnChild(opts: SpawnChildOptions): Child {
  installExitHook();
  const cp = spawn(opts.command, opts.args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    // Own process group: the stack decides the order of shutdown (a terminal's Ctrl-C reaches only
    // the parent), and killing the group also ends anything the child started itself.
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const pid = cp.pid;
  if (pid === undefined) {
    // spawn reports ENOENT and the like asynchronously; without a pid nothing was started.
    cp.on("error", () => {});
    throw new Error(`could not spawn ${opts.name} (${opts.command})`);
  }
  live.add(cp);

  const lines: string[] = [];
  const onLine = (line: string) => {
    lines.push(line);
    if (lines.length > TAIL_LINES) lines.shift();
    opts.sink?.(opts.name, line);
  };
  for (const stream of [cp.stdout, cp.stderr]) {
    if (stream) createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on("line", onLine);
  }

  // With a pid the spawn succeeded; later 'error' events (a failed kill) do not mean it exited.
  cp.on("error", (error) => opts.sink?.(opts.name, `child process error: ${error.message}`));
  let done = false;
  const exited = new Promise<ExitInfo>((resolve) => {
    cp.once("exit", (code, signal) => {
      done = true;
      live.delete(cp);
      resolve({ code, signal });
    });
  });

  let stopping: Promise<void> | undefined;
  const stop = (graceMs = DEFAULT_GRACE_MS): Promise<void> => {
    stopping ??= (async () => {
      if (!done) {
        killGroup(pid, "SIGTERM");
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<"timeout">((r) => {
          timer = setTimeout(() => r("timeout"), graceMs);
        });
        const first = await Promise.race([exited, timedOut]);
        clearTimeout(timer);
        if (first === "timeout") {
          killGroup(pid, "SIGKILL");
          await exited;
        }
      }
      // The leader is gone; take down anything it left behind in its group.
      if (groupAlive(pid)) killGroup(pid, "SIGKILL");
    })();
    return stopping;
  };

  return {
    name: opts.name,
    pid,
    exited,
    running: () => !done,
    tail: () => [...lines],
    stop,
  };
}

/** A port that was free a moment ago on 127.0.0.1 (bind port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ port: 0, host: "127.0.0.1" }, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error("no port assigned"))));
    });
  });
}

/**
 * Polls `check` until it returns true. Fails early, with the child's last output lines, when the
 * child it waits for has exited.
 */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  opts: { timeoutMs?: number; intervalMs?: number; child?: Child } = {},
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  let lastError: unknown;
  for (;;) {
    if (opts.child && !opts.child.running()) {
      const info = await opts.child.exited;
      throw new Error(
        `${opts.child.name} exited (code ${info.code}, signal ${info.signal}) while waiting for ${what}:\n${opts.child.tail().join("\n")}`,
      );
    }
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const tail = opts.child ? `\n${opts.child.tail().join("\n")}` : "";
      const cause = lastError instanceof Error ? ` (last error: ${lastError.message})` : "";
      throw new Error(`timed out waiting for ${what}${cause}${tail}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}
