import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { groupAlive, pidAlive, spawnChild, waitUntil } from "./child.ts";

describe("spawnChild", () => {
  it("hands on output lines and stops a well-behaved child with SIGTERM", async () => {
    const lines: string[] = [];
    const child = spawnChild({
      name: "echo",
      command: process.execPath,
      args: ["-e", "console.log('hello'); console.error('world'); setInterval(() => {}, 1000)"],
      sink: (source, line) => lines.push(`${source}:${line}`),
    });
    await waitUntil("two lines", async () => lines.length === 2, { child });
    expect(lines.sort()).toEqual(["echo:hello", "echo:world"]);
    await child.stop();
    expect(await child.exited).toEqual({ code: null, signal: "SIGTERM" });
    expect(pidAlive(child.pid)).toBe(false);
    await child.stop(); // safe twice
  });

  it("SIGKILLs a child that ignores SIGTERM, and whatever it started in its group", async () => {
    let grandchild = 0;
    const child = spawnChild({
      name: "stubborn",
      command: process.execPath,
      args: [
        "-e",
        `process.on("SIGTERM", () => {});
         const c = require("node:child_process").spawn("sleep", ["60"], { stdio: "ignore" });
         console.log(c.pid); setInterval(() => {}, 1000);`,
      ],
      sink: (_s, line) => {
        grandchild = Number(line);
      },
    });
    await waitUntil("grandchild pid", async () => grandchild > 0, { child });
    await sleep(100); // let it install the SIGTERM handler
    const started = Date.now();
    await child.stop(300);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect((await child.exited).signal).toBe("SIGKILL");
    await waitUntil("grandchild gone", async () => !pidAlive(grandchild), { timeoutMs: 2_000 });
    expect(groupAlive(child.pid)).toBe(false);
  });

  it("waitUntil fails fast with the output of a child that exits", async () => {
    const child = spawnChild({
      name: "crash",
      command: process.execPath,
      args: ["-e", "console.error('boom'); process.exit(3)"],
    });
    await expect(waitUntil("never", async () => false, { child, timeoutMs: 10_000 })).rejects.toThrow(
      /crash exited \(code 3[\s\S]*boom/,
    );
  });
});
