/**
 * Process helpers for the KVM test bed: run a command and collect its output, and find or end the
 * processes that live in one mount namespace (a test-bed host) by pid.
 */
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";

export type ExecResult = { code: number; stdout: string; stderr: string };

export type RunOptions = {
  /**
   * Written to the command's stdin (empty otherwise). Node hands stdin over as a socket, which
   * `open("/dev/stdin")` refuses (ENXIO): for `virsh define /dev/stdin`, pipe it through
   * `sh -c 'cat > FILE && virsh define FILE'` or read it over ssh, where stdin is a pipe.
   */
  input?: string;
  /** SIGKILL after this long; the result then has code 124 (as timeout(1)). Default 60 s. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
};

/** The environment of a login on a test-bed host: no PATH or LIBVIRT_* from the test runner. */
export const HOST_ENV: NodeJS.ProcessEnv = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  HOME: "/root",
  USER: "root",
  LANG: "C.UTF-8",
};

/** Runs a command to its end; never rejects for a non-zero exit (only when it cannot be spawned). */
export function run(command: string, args: string[], opts: RunOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const cp = spawn(command, args, { env: opts.env ?? HOST_ENV, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    cp.stdout.on("data", (b: Buffer) => out.push(b));
    cp.stderr.on("data", (b: Buffer) => err.push(b));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      cp.kill("SIGKILL");
    }, opts.timeoutMs ?? 60_000);
    cp.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    // 'close' waits for stdout/stderr to end too: a command that leaves a daemon holding them would
    // hang here (the test bed's daemons are started by the host's holder, not by run()).
    cp.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: timedOut ? 124 : (code ?? (signal ? 128 : 1)),
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      });
    });
    cp.stdin.on("error", () => {}); // EPIPE when the command does not read its input
    cp.stdin.end(opts.input ?? "");
  });
}

/** As run(), but throws (with the command's stderr) unless it exits 0; returns stdout. */
export async function runOk(command: string, args: string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(command, args, opts);
  if (r.code !== 0) {
    const what = [command, ...args].join(" ");
    throw new Error(`${what} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
  }
  return r.stdout;
}

/** Whether a process exists and is not a zombie (daemons reparented to pid 1 may linger as zombies). */
export function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Whether the pid has a /proc entry at all (a zombie not yet reaped counts). */
export function pidExists(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}

/**
 * When the process started (clock ticks since boot, field 22 of /proc/PID/stat): with the pid, an
 * identity that a reused pid does not share. Undefined when it is gone.
 */
export function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** The mount namespace of a process, as `mnt:[inode]`; undefined when it is gone. */
export function mountNamespaceOf(pid: number | "self"): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

/** The command name of a process (`comm`), or "?" when it is gone. */
export function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "?";
  }
}

/** Every live process in the mount namespace `ns` (zombies excluded). */
export function processesIn(ns: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (mountNamespaceOf(pid) === ns && pidAlive(pid)) pids.push(pid);
  }
  return pids;
}

/**
 * Sends `signal` to `pid` only while it is still in the namespace `ns`: a pid that was reused by a
 * process outside the test bed is left alone.
 */
export function signalIn(ns: string, pid: number, signal: NodeJS.Signals): void {
  if (mountNamespaceOf(pid) !== ns) return;
  try {
    process.kill(pid, signal);
  } catch {
    // ESRCH: it ended meanwhile.
  }
}

/** Polls `check` every `intervalMs` until it returns true; false if `timeoutMs` passes first. */
export async function pollUntil(check: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Quotes a string for a POSIX shell (a remote ssh command line, an `sh -c` script). */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}
