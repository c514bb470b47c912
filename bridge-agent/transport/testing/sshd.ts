/**
 * A real OpenSSH sshd for tests: its own temp folder, host key, client key, authorized_keys and
 * sshd_config, listening on a loopback address. Started as a child (`sshd -D`) and stopped by pid,
 * together with every process it forked (per-connection sshd processes call setsid(), so killing
 * the process group would miss them).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer, connect as netConnect } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";

const SSHD = "/usr/sbin/sshd";

export type SshdOptions = {
  /** Loopback address to listen on. */
  address?: string;
  /** Port; a free one when absent. */
  port?: number;
  /** OpenSSH private host key to reuse (to restart "the same" host); generated when absent. */
  hostPrivateKey?: string;
  /** OpenSSH private client key whose public half is authorized; generated when absent. */
  clientPrivateKey?: string;
  /** Extra sshd_config lines, appended last. */
  extraConfig?: string[];
};

export type Sshd = {
  address: string;
  port: number;
  /** The user that logs in (the user running the tests). */
  user: string;
  /** `SHA256:<base64 without padding>`, as printed by `ssh-keygen -lf`. */
  hostKeyFingerprint: string;
  hostPrivateKey: string;
  clientKeyPath: string;
  clientPrivateKey: string;
  /** sshd's own log (`-E`, LogLevel VERBOSE). */
  logPath: string;
  pid: number;
  /** Current log text. */
  log(): string;
  /** Kills sshd and everything it forked, by pid, then removes the temp folder; safe twice. */
  stop(): Promise<void>;
};

/** Starts sshd and resolves once its port accepts connections. */
export async function startSshd(opts: SshdOptions = {}): Promise<Sshd> {
  const address = opts.address ?? "127.0.0.1";
  const port = opts.port ?? (await freePort(address));
  const dir = mkdtempSync(join(tmpdir(), "usher-sshd-"));
  const hostKeyPath = join(dir, "host_key");
  const clientKeyPath = join(dir, "client_key");
  keyPair(hostKeyPath, opts.hostPrivateKey);
  keyPair(clientKeyPath, opts.clientPrivateKey);
  writeFileSync(join(dir, "authorized_keys"), readFileSync(`${clientKeyPath}.pub`), { mode: 0o600 });
  // `256 SHA256:xxxx comment (ED25519)`
  const hostKeyFingerprint = execFileSync("ssh-keygen", ["-lf", `${hostKeyPath}.pub`], {
    encoding: "utf8",
  }).split(" ")[1]!;

  const cfgPath = join(dir, "sshd_config");
  const logPath = join(dir, "sshd.log");
  writeFileSync(
    cfgPath,
    [
      `ListenAddress ${address}`,
      `Port ${port}`,
      `HostKey ${hostKeyPath}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      "UsePAM no",
      "StrictModes no",
      "PermitRootLogin prohibit-password",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      `PidFile ${join(dir, "sshd.pid")}`,
      "MaxSessions 10",
      "LogLevel VERBOSE",
      "PrintMotd no",
      "PrintLastLog no",
      ...(opts.extraConfig ?? []),
      "",
    ].join("\n"),
  );
  mkdirSync("/run/sshd", { recursive: true }); // privilege separation folder sshd insists on

  const child = spawn(SSHD, ["-D", "-f", cfgPath, "-E", logPath], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot start ${SSHD}`);

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await killTree(pid, child, exited);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await waitForPort(address, port, child, 10_000);
  } catch (err) {
    const log = existsSync(logPath) ? readFileSync(logPath, "utf8") : "";
    await stop();
    throw new Error(`sshd did not start on ${address}:${port}: ${(err as Error).message}\n${stderr}${log}`);
  }
  return {
    address,
    port,
    user: userInfo().username,
    hostKeyFingerprint,
    hostPrivateKey: readFileSync(hostKeyPath, "utf8"),
    clientKeyPath,
    clientPrivateKey: readFileSync(clientKeyPath, "utf8"),
    logPath,
    pid,
    log: () => (existsSync(logPath) ? readFileSync(logPath, "utf8") : ""),
    stop,
  };
}

/** Writes `path` (given or generated ed25519) and `path.pub`. */
function keyPair(path: string, privateKey?: string): void {
  if (privateKey === undefined) {
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "usher-test", "-f", path]);
    return;
  }
  writeFileSync(path, privateKey, { mode: 0o600 });
  writeFileSync(`${path}.pub`, execFileSync("ssh-keygen", ["-y", "-f", path]));
}

function freePort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, address, () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(address: string, port: number, child: ChildProcess, timeoutMs: number) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`sshd exited (${child.exitCode})`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = netConnect({ host: address, port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error("timed out waiting for the port");
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every live descendant of `root`, read from /proc. */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    // `pid (comm) state ppid ...`; comm may contain spaces and parentheses
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    for (const c of children.get(todo.pop()!) ?? []) {
      out.push(c);
      todo.push(c);
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

function kill(pid: number, sig: NodeJS.Signals) {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

async function killTree(pid: number, child: ChildProcess, exited: Promise<void>) {
  // Children first, while sshd is still there to reap them (else they linger as zombies of init).
  const forked = descendants(pid);
  await killAll(forked);
  const deadline = Date.now() + 1_000;
  while (descendants(pid).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await killAll([pid]);
  if (child.exitCode === null && child.signalCode === null) await exited;
}

async function killAll(pids: number[]) {
  for (const p of pids) kill(p, "SIGTERM");
  const deadline = Date.now() + 3_000;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  for (const p of pids.filter(alive)) kill(p, "SIGKILL");
}
