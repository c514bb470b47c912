import { describe, expect, it } from "vitest";
import { LocalRunner } from "./local.ts";

const node = process.execPath;
const runner = () => new LocalRunner({ hostId: "local" });

describe("LocalRunner", () => {
  it("passes argv to the program as is: no shell reads it", async () => {
    const hostile = ["$(reboot)", "a;b", "`id`", "'\"", "--help", "*"];
    const res = await runner().run(["echo", ...hostile]);
    expect(res).toEqual({ code: 0, stdout: `${hostile.join(" ")}\n`, stderr: "" });
  });

  it("writes stdin, then closes it", async () => {
    expect((await runner().run(["cat"], { stdin: "line 1\nline 2\n" })).stdout).toBe("line 1\nline 2\n");
    expect((await runner().run(["cat"])).stdout).toBe(""); // no stdin: closed at once, cat ends
  });

  it("resolves a non-zero exit with its output; it is not an error here", async () => {
    const res = await runner().run([node, "-e", "console.log('out'); console.error('err'); process.exit(3)"]);
    expect(res).toEqual({ code: 3, stdout: "out\n", stderr: "err\n" });
  });

  it("hands stderr to onStderr as it arrives", async () => {
    const chunks: { at: number; text: string }[] = [];
    const t0 = performance.now();
    const script = "process.stderr.write('one\\n'); setTimeout(() => process.stderr.write('two\\n'), 200)";
    const res = await runner().run([node, "-e", script], {
      onStderr: (text) => chunks.push({ at: performance.now() - t0, text }),
    });
    expect(chunks.map((c) => c.text).join("")).toBe("one\ntwo\n");
    expect(res.stderr).toBe("one\ntwo\n");
    expect(chunks[0]?.at).toBeLessThan((chunks.at(-1)?.at ?? 0) - 100); // the first came well before
  });

  it("kills a command past timeoutMs and fails with timeout", async () => {
    const t0 = performance.now();
    await expect(
      runner().run([node, "-e", "setTimeout(() => {}, 10000)"], { timeoutMs: 200 }),
    ).rejects.toMatchObject({ name: "RunnerError", code: "timeout" });
    expect(performance.now() - t0).toBeLessThan(3000);
  });

  it("kills a command when the signal aborts; an aborted signal runs nothing", async () => {
    const ctl = new AbortController();
    const run = runner().run([node, "-e", "setTimeout(() => {}, 10000)"], { signal: ctl.signal });
    setTimeout(() => ctl.abort(), 100);
    await expect(run).rejects.toMatchObject({ code: "aborted" });
    await expect(runner().run(["echo", "never"], { signal: ctl.signal })).rejects.toMatchObject({
      code: "aborted",
    });
  });

  it("fails with spawn_failed for a program that does not exist, and refuses a bad argv", async () => {
    await expect(runner().run(["/nonexistent/usher-no-such-tool"])).rejects.toMatchObject({
      code: "spawn_failed",
    });
    await expect(runner().run([])).rejects.toMatchObject({ code: "bad_argv" });
    await expect(runner().run(["echo", "a\0b"])).rejects.toMatchObject({ code: "bad_argv" });
  });

  it("runs every command with the env it was given", async () => {
    const r = new LocalRunner({ hostId: "h", env: { ...process.env, USHER_TEST_VALUE: "from-env" } });
    const res = await r.run([node, "-e", "console.log(process.env.USHER_TEST_VALUE)"]);
    expect(res.stdout).toBe("from-env\n");
  });

  it("close ends running commands and refuses new ones; closing twice is fine", async () => {
    const r = runner();
    const run = r.run([node, "-e", "setTimeout(() => {}, 10000)"]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await r.close();
    await r.close();
    await expect(run).rejects.toMatchObject({ code: "closed" });
    await expect(r.run(["echo"])).rejects.toMatchObject({ code: "closed" });
  });
});
