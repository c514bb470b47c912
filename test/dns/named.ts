/**
 * A private BIND 9 `named` for tests: its own temp dir (config, zones, journals, lock and session
 * key), listening on 127.0.0.1 only on a free port, no control channel, no recursion. It serves
 * `usher.test`, `10.10.in-addr.arpa` and a zone with a long name (to force updates over TCP), all
 * updatable with the key `usher-test`; the key `usher-denied` is known but not allowed to update.
 * stop() ends the process by its pid and removes the dir.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const ZONE = "usher.test";
export const REVERSE_ZONE = "10.10.in-addr.arpa";
/** 190 characters: a VM's update in it is over 512 octets, so it goes over TCP. */
export const LONG_ZONE = `${"l".repeat(60)}.${"m".repeat(60)}.${"n".repeat(57)}.usher.test`;
/** `alias.usher.test` is a CNAME: adding an A there must fail its prerequisite. */
export const ALIAS = "alias";

const SEARCH_PATH = ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"];
const PACKAGES = "bind9 bind9-dnsutils";

export type TsigKeyFile = { name: string; algorithm: "hmac-sha256"; secretBase64: string };

export type Named = {
  address: "127.0.0.1";
  port: number;
  pid: number;
  dir: string;
  updateKey: TsigKeyFile;
  deniedKey: TsigKeyFile;
  /** `dig +short` answers for a name and type, asked of this server. */
  dig(name: string, type: string): Promise<string[]>;
  /** The SOA serial of a zone (changes with every update the zone takes). */
  serial(zone: string): Promise<number>;
  /** named's log so far (stderr of `-g`). */
  log(): string;
  stop(): Promise<void>;
};

function which(tool: string): string | undefined {
  for (const dir of SEARCH_PATH) {
    try {
      accessSync(join(dir, tool), constants.X_OK);
      return join(dir, tool);
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Whether `named` and `dig` are installed, and if not, why (tests print it and skip). */
export function namedSupport(): { ok: true } | { ok: false; reason: string } {
  const missing = ["named", "dig"].filter((t) => !which(t));
  if (missing.length > 0) {
    return {
      ok: false,
      reason: `missing ${missing.join(", ")}; install: apt-get install --no-install-recommends ${PACKAGES}`,
    };
  }
  return { ok: true };
}

function zoneFile(origin: string, extra: string[] = []): string {
  return [
    "$TTL 300",
    `${origin}. IN SOA ns.${ZONE}. hostmaster.${ZONE}. 1 3600 600 86400 300`,
    `${origin}. IN NS ns.${ZONE}.`,
    ...extra,
    "",
  ].join("\n");
}

function namedConf(dir: string, port: number, keys: TsigKeyFile[]): string {
  const zone = (name: string, file: string) =>
    `zone "${name}" { type primary; file "${join(dir, file)}"; journal "${join(dir, `${file}.jnl`)}";` +
    ` allow-update { key "usher-test"; }; };`;
  return [
    ...keys.map((k) => `key "${k.name}" { algorithm ${k.algorithm}; secret "${k.secretBase64}"; };`),
    "controls { };", // no rndc channel (it would listen on 953, also on ::1)
    "options {",
    `  directory "${dir}";`,
    `  pid-file "${join(dir, "named.pid")}";`,
    `  lock-file "${join(dir, "named.lock")}";`,
    `  session-keyfile "${join(dir, "session.key")}";`,
    `  managed-keys-directory "${dir}";`,
    `  listen-on port ${port} { 127.0.0.1; };`,
    "  listen-on-v6 { none; };",
    "  recursion no;",
    "  dnssec-validation no;",
    "  notify no;",
    "  allow-query { 127.0.0.1; };",
    "};",
    zone(ZONE, "forward.zone"),
    zone(REVERSE_ZONE, "reverse.zone"),
    zone(LONG_ZONE, "long.zone"),
    "",
  ].join("\n");
}

/** A port free for both UDP and TCP on 127.0.0.1 (named may still lose a race for it: retried). */
async function freePort(): Promise<number> {
  const udp = createSocket("udp4");
  await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", resolve));
  const port = udp.address().port;
  const tcp = createServer();
  const ok = await new Promise<boolean>((resolve) => {
    tcp.once("error", () => resolve(false));
    tcp.listen(port, "127.0.0.1", () => resolve(true));
  });
  udp.close();
  if (ok) await new Promise((resolve) => tcp.close(resolve));
  return ok ? port : freePort();
}

function execText(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(" ")}: ${stderr || err.message}`)) : resolve(stdout),
    ),
  );
}

function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

const newKey = (name: string): TsigKeyFile => ({
  name,
  algorithm: "hmac-sha256",
  secretBase64: randomBytes(32).toString("base64"),
});

/** Starts named and resolves once it answers a SOA query for every zone. */
export async function startNamed(): Promise<Named> {
  const namedPath = which("named");
  if (!namedPath) throw new Error(`named is not installed (${PACKAGES})`);
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), "usher-named-"));
    try {
      return await launch(namedPath, dir, await freePort());
    } catch (err) {
      lastError = err;
      rmSync(dir, { recursive: true, force: true });
    }
  }
  throw lastError;
}

async function launch(namedPath: string, dir: string, port: number): Promise<Named> {
  const updateKey = newKey("usher-test");
  const deniedKey = newKey("usher-denied");
  writeFileSync(join(dir, "named.conf"), namedConf(dir, port, [updateKey, deniedKey]));
  writeFileSync(
    join(dir, "forward.zone"),
    zoneFile(ZONE, [`ns.${ZONE}. IN A 127.0.0.1`, `${ALIAS}.${ZONE}. IN CNAME ns.${ZONE}.`]),
  );
  writeFileSync(join(dir, "reverse.zone"), zoneFile(REVERSE_ZONE));
  writeFileSync(join(dir, "long.zone"), zoneFile(LONG_ZONE));

  // -g: foreground, log to stderr; -u root: no privilege drop (the temp dir is root's); -n 1: one worker.
  const child = spawn(namedPath, ["-g", "-4", "-n", "1", "-u", "root", "-c", join(dir, "named.conf")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr?.on("data", (b: Buffer) => {
    log = (log + b.toString("utf8")).slice(-200_000);
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error("named did not start");

  const dig = async (name: string, type: string) => {
    const args = [
      `@127.0.0.1`,
      "-p",
      String(port),
      "+short",
      "+norecurse",
      "+time=1",
      "+tries=1",
      name,
      type,
    ];
    return (await execText("dig", args)).split("\n").filter((l) => l.length > 0);
  };
  const stop = async () => {
    if (!(await exited(child, 0))) {
      process.kill(pid, "SIGTERM");
      if (!(await exited(child, 5_000))) {
        process.kill(pid, "SIGKILL");
        await exited(child, 5_000);
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const named: Named = {
    address: "127.0.0.1",
    port,
    pid,
    dir,
    updateKey,
    deniedKey,
    dig,
    serial: async (zone) => Number((await dig(zone, "SOA"))[0]?.split(" ")[2]),
    log: () => log,
    stop,
  };

  const deadline = Date.now() + 15_000;
  for (;;) {
    if (await exited(child, 0)) {
      await stop();
      throw new Error(`named exited (${child.exitCode ?? child.signalCode}):\n${log.slice(-2_000)}`);
    }
    const answers = await Promise.all(
      [ZONE, REVERSE_ZONE, LONG_ZONE].map((z) => dig(z, "SOA").catch(() => [])),
    );
    if (answers.every((a) => a.length === 1)) return named;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`named did not answer within 15 s:\n${log.slice(-2_000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
