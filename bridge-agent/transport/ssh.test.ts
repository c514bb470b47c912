/**
 * SshRunner against a real OpenSSH sshd on loopback (see testing/sshd.ts). Every sshd is stopped by
 * pid in afterAll; the last test checks that none is left running.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DriverError } from "../drivers/errors.ts";
import { UnsafeArgumentError } from "./quote.ts";
import { SshRunner, type SshRunnerOptions } from "./ssh.ts";
import { type Sshd, startSshd } from "./testing/sshd.ts";

const sshds: Sshd[] = [];
const runners: SshRunner[] = [];
let work: string;
let a: Sshd; // the host most tests use
let b: Sshd; // another host: its key is the "wrong" one, its client key is not authorized on a

async function sshd(opts?: Parameters<typeof startSshd>[0]) {
  const s = await startSshd(opts);
  sshds.push(s);
  return s;
}

function runner(s: Sshd, ssh: Partial<SshRunnerOptions["ssh"]> = {}, killGraceMs?: number) {
  const r = new SshRunner({
    hostId: `host-${s.port}`,
    address: s.address,
    ssh: {
      user: s.user,
      port: s.port,
      privateKeyPath: s.clientKeyPath,
      hostKeyFingerprint: s.hostKeyFingerprint,
      ...ssh,
    },
    ...(killGraceMs === undefined ? {} : { killGraceMs }),
  });
  runners.push(r);
  return r;
}

/** Fails unless `p` rejects with a DriverError of `code`; returns it. */
async function driverError(p: Promise<unknown>, code: string): Promise<DriverError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DriverError);
  expect((err as DriverError).code, (err as Error).message).toBe(code);
  return err as DriverError;
}

/**
 * Live processes whose argv, joined by spaces, is `argv` (or contains it, with `partial`); read from
 * /proc, as the test host is this machine.
 */
function processes(argv: string, partial = false): number[] {
  const found: number[] = [];
  for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2)[0] === "Z") continue;
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1).join(" ");
      if (partial ? cmd.includes(argv) : cmd === argv) found.push(+pid);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Direct children of `pid` (sshd forks one process per connection). */
function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const p of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (state !== "Z" && Number(ppid) === pid) found.push(+p);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function until(check: () => boolean, ms = 3_000) {
  const end = Date.now() + ms;
  while (!check() && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
  return check();
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "usher-ssh-test-"));
  [a, b] = await Promise.all([sshd(), sshd()]);
});

afterAll(async () => {
  await Promise.all(runners.map((r) => r.close()));
  await Promise.all(sshds.map((s) => s.stop()));
  rmSync(work, { recursive: true, force: true });
});

describe("SshRunner: commands", () => {
  it("runs argv and returns stdout, stderr and the exit code", async () => {
    const r = runner(a);
    expect(await r.run(["echo", "hello", "world"])).toEqual({ code: 0, stdout: "hello world\n", stderr: "" });
    expect(await r.run(["sh", "-c", "echo out; echo err >&2; exit 3"])).toEqual({
      code: 3,
      stdout: "out\n",
      stderr: "err\n",
    });
    expect((await r.run(["false"])).code).toBe(1);
    expect((await r.run(["no-such-command-usher"])).code).toBe(127);
    // Killed by a signal: 128 + SIGTERM, as shells report it.
    expect((await r.run(["sh", "-c", "kill -TERM $$"])).code).toBe(143);
    expect(r.status()).toMatchObject({ state: "ready", connects: 1, authAttempts: 1 });
  });

  it("passes hostile arguments through as exact bytes", async () => {
    const hostile = [
      "",
      " ",
      "'",
      '"',
      "\\",
      "$(touch /tmp/usher-pwned)",
      "`id`",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal shell expansion is the point
      "${HOME}",
      "a;b|c&d",
      "--help",
      "-n",
      "*",
      "~",
      "it's",
      "\t\x01\x1b[0m",
      "é 中文 🚀",
      "%s%n",
    ];
    const { code, stdout } = await runner(a).run(["printf", "%s\\0", ...hostile]);
    expect(code).toBe(0);
    expect(stdout.split("\0").slice(0, -1)).toEqual(hostile);
    expect(processes("usher-pwned", true)).toEqual([]);
  });

  it("refuses argv it cannot pass safely", async () => {
    const r = runner(a);
    await expect(r.run(["echo", "a\nb"])).rejects.toThrow(UnsafeArgumentError);
    await expect(r.run(["echo", "a\0b"])).rejects.toThrow(/NUL/);
    await expect(r.run([])).rejects.toThrow(UnsafeArgumentError);
  });

  it("writes stdin and closes it; without stdin the command sees EOF", async () => {
    const r = runner(a);
    const text = "line 1\nligne 2 é\n'quoted' $(x)\n".repeat(2_000);
    expect(await r.run(["cat"], { stdin: text })).toEqual({ code: 0, stdout: text, stderr: "" });
    expect((await r.run(["wc", "-c"])).stdout.trim()).toBe("0");
  });

  it("streams stderr as it arrives", async () => {
    const chunks: { text: string; at: number }[] = [];
    const t0 = Date.now();
    const res = await runner(a).run(["sh", "-c", "echo first >&2; sleep 0.4; echo second >&2"], {
      onStderr: (text) => chunks.push({ text, at: Date.now() - t0 }),
    });
    expect(res.stderr).toBe("first\nsecond\n");
    expect(chunks.map((c) => c.text).join("")).toBe("first\nsecond\n");
    expect(chunks[0]!.text).toBe("first\n");
    // The first chunk came well before the command ended.
    expect(chunks.at(-1)!.at - chunks[0]!.at).toBeGreaterThanOrEqual(300);
  });

  it("runs 30 commands at once over one connection, never more than maxChannels channels", async () => {
    const r = runner(a, { maxChannels: 4 });
    const dir = mkdtempSync(join(work, "conc-"));
    // Each command marks itself running in `dir`, prints how many are running, and unmarks itself.
    const script = 'touch "$1/$$"; ls "$1" | wc -l; sleep 0.3; rm "$1/$$"';
    const t0 = performance.now();
    const results = await Promise.all(
      Array.from({ length: 30 }, () => r.run(["sh", "-c", script, "sh", dir])),
    );
    const ms = performance.now() - t0;
    expect(results.every((x) => x.code === 0)).toBe(true);
    const seen = results.map((x) => Number(x.stdout.trim()));
    expect(Math.max(...seen)).toBeLessThanOrEqual(4);
    expect(Math.max(...seen)).toBeGreaterThanOrEqual(2);
    const s = r.status();
    expect(s.channels).toEqual({ open: 0, waiting: 0, peak: 4, max: 4 });
    expect(s.connects).toBe(1);
    console.info(
      `30 commands, 4 channels: ${Math.round(ms)} ms; running at once seen on the host: ${Math.max(...seen)}`,
    );
  });
});

describe("SshRunner: stopping commands", () => {
  it("kills a command that runs past timeoutMs", async () => {
    const r = runner(a, {}, 500);
    const t0 = performance.now();
    const err = await driverError(r.run(["sleep", "30.101"], { timeoutMs: 400 }), "timeout");
    expect(performance.now() - t0).toBeLessThan(1_500);
    expect(err.message).toMatch(/sleep .*did not finish within 400 ms/);
    expect(await until(() => processes("sleep 30.101").length === 0)).toBe(true);
    expect(await until(() => r.status().channels.open === 0)).toBe(true);
    // The connection is still good.
    expect((await r.run(["echo", "ok"])).stdout).toBe("ok\n");
  });

  it("kills a command whose AbortSignal fires, and drops commands still waiting for a channel", async () => {
    const r = runner(a, { maxChannels: 1 });
    const ac = new AbortController();
    const running = driverError(r.run(["sleep", "30.202"], { signal: ac.signal }), "aborted");
    const queued = new AbortController();
    const waiting = driverError(r.run(["echo", "never"], { signal: queued.signal }), "aborted");
    expect(await until(() => processes("sleep 30.202").length === 1)).toBe(true);
    expect(r.status().channels).toMatchObject({ open: 1, waiting: 1 });
    queued.abort(new Error("not needed"));
    await waiting;
    expect(r.status().channels.waiting).toBe(0);
    ac.abort(new Error("stop"));
    await running;
    expect(await until(() => processes("sleep 30.202").length === 0)).toBe(true);
    await driverError(r.run(["true"], { signal: AbortSignal.abort() }), "aborted");
  });
});

describe("SshRunner: connection failures", () => {
  it("refuses a host whose key does not match the pinned fingerprint, before authentication", async () => {
    // Points at b, but pins a's host key: as if b had taken over a's address.
    const r = runner(b, { hostKeyFingerprint: a.hostKeyFingerprint, reconnectMaxMs: 100 });
    const err = await driverError(r.run(["touch", join(work, "should-not-exist")]), "host_key_mismatch");
    expect(err.message).toContain(`expected ${a.hostKeyFingerprint}`);
    expect(err.message).toContain(`presented ${b.hostKeyFingerprint}`);
    expect(err.message).toContain("before authentication");
    const s = r.status();
    expect(s).toMatchObject({ state: "down", failures: 1, connects: 0, authAttempts: 0 });
    expect(s.lastError?.code).toBe("host_key_mismatch");
    // The host's own log: a connection came, no key was ever offered to it.
    const log = b.log();
    expect(log).toMatch(/Connection from 127\.0\.0\.1/);
    expect(log).not.toMatch(/publickey|Accepted|Failed|Starting session/);
    // Still refused on the next attempt (after the backoff), and nothing ran.
    await driverError(r.run(["true"]), "host_key_mismatch");
    expect(readdirSync(work)).not.toContain("should-not-exist");
  });

  it("reports a key the host does not accept as auth_failed", async () => {
    const r = runner(a, { privateKeyPath: b.clientKeyPath });
    const err = await driverError(r.run(["true"]), "auth_failed");
    expect(err.message).toMatch(/refused the agent's key/);
    expect(r.status().authAttempts).toBe(1);
  });

  it("reports a missing key file as auth_failed and a closed port as host_unreachable", async () => {
    await driverError(runner(a, { privateKeyPath: join(work, "no-such-key") }).run(["true"]), "auth_failed");
    const closedPort = { ...a, port: 1 } as Sshd;
    const err = await driverError(runner(closedPort).run(["true"]), "host_unreachable");
    expect(err.message).toMatch(/ECONNREFUSED/);
  });

  it("reconnects after the host's sshd restarts, with the same runner", async () => {
    const c = await sshd();
    // The key file must outlive c (stop() removes c's folder): keep a copy.
    const keyPath = join(work, "c_client_key");
    writeFileSync(keyPath, c.clientPrivateKey, { mode: 0o600 });
    const r = runner(c, { privateKeyPath: keyPath, reconnectBaseMs: 100, reconnectMaxMs: 400 });
    expect((await r.run(["echo", "one"])).stdout).toBe("one\n");

    // A command running when the host goes away fails as unreachable.
    const inFlight = driverError(r.run(["sleep", "30.303"]), "host_unreachable");
    expect(await until(() => processes("sleep 30.303").length === 1)).toBe(true);
    await c.stop();
    const lost = await inFlight;
    expect(lost.message).toMatch(/lost/);
    expect(await until(() => r.status().state !== "ready")).toBe(true);
    // While the host is down, commands fail (each after one real attempt), and attempts back off.
    const down = await driverError(r.run(["true"]), "host_unreachable");
    expect(down.message).toMatch(/ECONNREFUSED/);
    expect(r.status()).toMatchObject({ state: "down", failures: 1 });

    const c2 = await sshd({
      port: c.port,
      hostPrivateKey: c.hostPrivateKey,
      clientPrivateKey: c.clientPrivateKey,
    });
    expect(c2.hostKeyFingerprint).toBe(c.hostKeyFingerprint);
    const t0 = performance.now();
    expect((await r.run(["echo", "two"])).stdout).toBe("two\n");
    console.info(`reconnected in ${Math.round(performance.now() - t0)} ms`);
    expect(r.status()).toMatchObject({ state: "ready", failures: 0, connects: 2 });
  });
});

describe("SshRunner: keepalive", () => {
  it("notices a host that stops answering and reconnects", async () => {
    const k = await sshd();
    const r = runner(k, { keepaliveIntervalMs: 200, keepaliveCountMax: 2, reconnectBaseMs: 50 });
    await r.run(["true"]);
    // Freeze the per-connection sshd process: TCP stays up, SSH goes silent.
    const sessions = childrenOf(k.pid);
    expect(sessions.length).toBe(1);
    for (const p of sessions) process.kill(p, "SIGSTOP");
    try {
      const t0 = performance.now();
      expect(await until(() => r.status().state !== "ready", 5_000)).toBe(true);
      const ms = performance.now() - t0;
      console.info(`silent connection noticed after ${Math.round(ms)} ms`);
      expect(ms).toBeLessThan(2_000);
      expect((await r.run(["echo", "back"])).stdout).toBe("back\n");
      expect(r.status()).toMatchObject({ state: "ready", connects: 2 });
    } finally {
      for (const p of sessions) process.kill(p, "SIGCONT");
    }
  });
});

describe("SshRunner: close", () => {
  it("is safe twice, fails waiting commands, and refuses new ones", async () => {
    const r = runner(a, { maxChannels: 1 });
    const running = driverError(r.run(["sleep", "30.404"]), "host_unreachable");
    const waiting = driverError(r.run(["echo", "never"]), "host_unreachable");
    expect(await until(() => processes("sleep 30.404").length === 1)).toBe(true);
    await Promise.all([r.close(), r.close()]);
    await r.close();
    expect((await waiting).message).toMatch(/closed/);
    await running;
    // close() killed the running command on the host: it would outlive the connection otherwise.
    expect(await until(() => processes("sleep 30.404").length === 0)).toBe(true);
    const err = await driverError(r.run(["true"]), "host_unreachable");
    expect(err.message).toMatch(/closed/);
    expect(r.status().state).toBe("closed");
  });

  it("closes an idle runner that never connected", async () => {
    const r = runner(a);
    await r.close();
    await r.close();
    expect(r.status().state).toBe("closed");
  });
});

describe("test sshd", () => {
  it("stops by pid, safe twice, leaving no sshd or command behind", async () => {
    const d = await sshd();
    const r = runner(d);
    await r.run(["true"]);
    const t0 = performance.now();
    await d.stop();
    console.info(`sshd stopped in ${Math.round(performance.now() - t0)} ms`);
    await d.stop();
    expect(processes(d.logPath, true)).toEqual([]);
    // Commands started by tests that ran to their end or were killed.
    for (const n of ["30.101", "30.202", "30.303", "30.404"])
      expect(processes(`sleep ${n}`, true)).toEqual([]);
  });
});
