/** Unit tests of the SSH transport's pure parts; the runner itself is tested against sshd in ssh.test.ts. */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { backoffMs, hostKeyFingerprint, SshHostConfig } from "./ssh-config.ts";
import { ChannelSlots } from "./ssh-slots.ts";
import { killCommandLine, PidLineReader, wrappedCommandLine } from "./ssh-wrap.ts";

describe("SshHostConfig", () => {
  const fp = `SHA256:${"A".repeat(43)}`;
  it("fills defaults and requires a key path and a pinned fingerprint", () => {
    expect(SshHostConfig.parse({ privateKeyPath: "/k", hostKeyFingerprint: fp })).toMatchObject({
      user: "root",
      port: 22,
      maxChannels: 8,
    });
    expect(SshHostConfig.safeParse({ privateKeyPath: "/k" }).success).toBe(false);
    expect(SshHostConfig.safeParse({ privateKeyPath: "/k", hostKeyFingerprint: "MD5:aa:bb" }).success).toBe(
      false,
    );
    expect(SshHostConfig.safeParse({ privateKeyPath: "/k", hostKeyFingerprint: `${fp}=` }).success).toBe(
      false,
    );
  });

  it("computes OpenSSH's SHA256 fingerprint of a key blob", () => {
    // ssh-keygen -lf of this public key prints SHA256:... (checked against the real tool in ssh.test.ts)
    const fpOf = hostKeyFingerprint(Buffer.from("abc"));
    expect(fpOf).toBe("SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0");
  });
});

describe("backoffMs", () => {
  it("doubles per failure, stays within [ceiling/2, ceiling], and is capped", () => {
    const lo = () => 0;
    const hi = () => 1;
    expect([1, 2, 3, 4].map((n) => backoffMs(n, 100, 10_000, hi))).toEqual([100, 200, 400, 800]);
    expect([1, 2, 3, 4].map((n) => backoffMs(n, 100, 10_000, lo))).toEqual([50, 100, 200, 400]);
    expect(backoffMs(30, 100, 10_000, hi)).toBe(10_000);
    expect(backoffMs(1_000, 100, 10_000, lo)).toBe(5_000);
  });
});

describe("ChannelSlots", () => {
  it("hands out at most max, queues the rest in order, and never fails them", async () => {
    const slots = new ChannelSlots(2);
    const order: number[] = [];
    const r1 = await slots.acquire();
    const r2 = await slots.acquire();
    const later = [3, 4, 5].map((n) =>
      slots.acquire().then((rel) => {
        order.push(n);
        return rel;
      }),
    );
    expect(slots.waiting).toBe(3);
    r1();
    r1(); // idempotent
    const r3 = await later[0]!;
    expect(slots.inUse).toBe(2);
    r2();
    r3();
    (await later[1]!)();
    (await later[2]!)();
    expect(order).toEqual([3, 4, 5]);
    expect({ inUse: slots.inUse, waiting: slots.waiting, peak: slots.peak }).toEqual({
      inUse: 0,
      waiting: 0,
      peak: 2,
    });
  });

  it("drops an aborted waiter from the line", async () => {
    const slots = new ChannelSlots(1);
    const r1 = await slots.acquire();
    const ac = new AbortController();
    const waiting = slots.acquire(ac.signal);
    ac.abort(new Error("gone"));
    await expect(waiting).rejects.toThrow("gone");
    expect(slots.waiting).toBe(0);
    r1();
    expect(slots.inUse).toBe(0);
  });
});

describe("command wrapper", () => {
  it("reports the pid, then runs argv unchanged as that pid", () => {
    const r = spawnSync(
      "/bin/sh",
      ["-c", wrappedCommandLine(["sh", "-c", 'echo "$$" "$1"', "sh", "a 'b'"])],
      {
        encoding: "utf8",
      },
    );
    const reader = new PidLineReader();
    expect(reader.push(r.stderr)).toBe("");
    expect(r.stdout).toBe(`${reader.pid} a 'b'\n`);
  });

  it("takes the pid line off stderr across chunk boundaries and passes everything else on", () => {
    const reader = new PidLineReader();
    expect(reader.push("usher-")).toBe("");
    expect(reader.push("pid 42\nerr")).toBe("err");
    expect(reader.push("or\n")).toBe("or\n");
    expect(reader.pid).toBe(42);
    const other = new PidLineReader();
    expect(other.push("something else\n")).toBe("something else\n");
    expect(other.pid).toBeUndefined();
  });

  it("kills the process groups it is given", async () => {
    const victim = spawnSync("/bin/sh", ["-c", "setsid sleep 30.909 >/dev/null 2>&1 & echo $!"], {
      encoding: "utf8",
    });
    const pid = Number(victim.stdout.trim());
    try {
      expect(alive(pid)).toBe(true);
      const line = killCommandLine([
        { pid, signal: "TERM" },
        { pid: 999_999, signal: "KILL" },
      ]);
      expect(spawnSync("/bin/sh", ["-c", line]).status).toBe(0);
      await new Promise((r) => setTimeout(r, 100));
      expect(alive(pid)).toBe(false);
    } finally {
      if (alive(pid)) process.kill(pid, "SIGKILL");
    }
  });
});

/** Running (not gone, not a zombie waiting for init to reap it). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}
