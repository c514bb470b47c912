/** The entry point as another process starts it: `node bridge-agent/main.ts --config <file>`. */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateEd25519Jwks } from "../shared/signing/index.ts";
import { LOCAL_CREDENTIALS, type LocalSqs, startLocalSqs } from "./testing/local-sqs.ts";
import { waitFor } from "./testing/reports.ts";

const MAIN = fileURLToPath(new URL("./main.ts", import.meta.url));
const children: ChildProcess[] = [];

function run(args: string[]) {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  const out = { stdout: "", stderr: "" };
  child.stdout?.on("data", (b) => (out.stdout += b));
  child.stderr?.on("data", (b) => (out.stderr += b));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  return { child, out, exited };
}

describe("bridge-agent/main.ts", () => {
  let sqs: LocalSqs;
  const dir = mkdtempSync(join(tmpdir(), "usher-agent-main-"));
  beforeAll(async () => {
    sqs = await startLocalSqs();
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.pid) process.kill(c.pid, "SIGKILL");
    await sqs?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("exits 2 with a plain message on bad usage or a bad config", async () => {
    const noArgs = run([]);
    expect(await noArgs.exited).toBe(2);
    expect(noArgs.out.stderr).toMatch(/usage: usher-agent --config <path.json> \[--check\]/);
    const path = join(dir, "bad.json");
    writeFileSync(path, JSON.stringify({ agentId: "a" }));
    const bad = run(["--config", path]);
    expect(await bad.exited).toBe(2);
    expect(bad.out.stderr).toMatch(/invalid agent configuration:\n {2}site:/);
  });

  it("starts from a config file, and stops gracefully on SIGTERM with exit 0", async () => {
    const cp = await generateEd25519Jwks("cp");
    const agent = await generateEd25519Jwks("agent");
    const path = join(dir, "agent.json");
    const config = {
      agentId: "agent-main",
      site: "local",
      sqs: {
        endpoint: sqs.endpoint,
        commandQueueUrl: await sqs.createQueue("main-agent-local"),
        resultsQueueUrl: await sqs.createQueue("main-results"),
      },
      credentials: LOCAL_CREDENTIALS,
      controlPlanePublicKey: cp.publicJwk,
      signingKey: agent.privateJwk,
      pollWaitSeconds: 20,
      hosts: [
        { id: "sim-1", kind: "sim", address: "127.0.0.1", sim: { statePath: join(dir, "sim-1.json") } },
      ],
    };
    writeFileSync(path, JSON.stringify(config));
    const proc = run(["--config", path]);
    await waitFor(() => proc.out.stdout.includes('"msg":"agent started"'), 10_000, "agent started");
    await waitFor(async () => (await sqs.counts(config.sqs.resultsQueueUrl)).visible > 0, 5_000, "inventory");
    const t0 = Date.now();
    proc.child.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5_000); // the 20 s long poll is cut short
    expect(proc.out.stdout).toContain('"msg":"agent stopped"');
  });
});
