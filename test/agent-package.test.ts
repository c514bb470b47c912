/**
 * Packaging: the agent builds to one file that runs with plain `node` (no node_modules beside it),
 * and `--check` validates the config and reaches every host.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateEd25519Jwks } from "../shared/signing/keys.ts";

const run = promisify(execFile);
let dir: string;
let bundle: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "usher-agent-pkg-"));
  bundle = join(dir, "usher-agent.mjs");
  await run(process.execPath, ["infra/agent/build.ts", bundle]);
}, 120_000);
afterAll(() => rm(dir, { recursive: true, force: true }));

async function config(hosts: unknown[]) {
  const cp = await generateEd25519Jwks("cp");
  const agent = await generateEd25519Jwks("agent");
  const path = join(dir, `agent-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(
    path,
    JSON.stringify({
      agentId: "pkg-test",
      site: "lab",
      sqs: {
        region: "us-east-1",
        endpoint: "http://127.0.0.1:9",
        commandQueueUrl: "http://127.0.0.1:9/q/a",
        resultsQueueUrl: "http://127.0.0.1:9/q/r",
      },
      controlPlanePublicKey: cp.publicJwk,
      signingKey: agent.privateJwk,
      hosts,
    }),
  );
  return path;
}

/** Runs the bundle from a folder with no node_modules, as a site would. */
async function agent(args: string[]) {
  try {
    const out = await run(process.execPath, [bundle, ...args], { cwd: dir, timeout: 60_000 });
    return { code: 0, ...out };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("the agent bundle", () => {
  it("passes --check on a config whose hosts answer", async () => {
    const res = await agent([
      "--config",
      await config([
        { id: "s1", kind: "sim", address: "s1.sim" },
        { id: "s2", kind: "sim", address: "s2.sim" },
      ]),
      "--check",
    ]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^ok {3}s1 \(sim\): 0 domains, free 16 vCPUs/m);
    expect(res.stdout).toMatch(/^ok {3}s2 \(sim\)/m);
  });

  it("fails --check, exit 1, for a host it cannot reach over SSH, and still checks the others", async () => {
    const ssh = {
      port: 9,
      privateKeyPath: join(dir, "no-such-key"),
      hostKeyFingerprint: `SHA256:${"A".repeat(43)}`,
      readyTimeoutMs: 2000,
    };
    const res = await agent([
      "--config",
      await config([
        { id: "k1", kind: "kvm", address: "127.0.0.1", ssh },
        { id: "s1", kind: "sim", address: "s1.sim" },
      ]),
      "--check",
    ]);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/^FAIL k1 \(kvm\): (host_unreachable|auth_failed): /m);
    expect(res.stdout).toMatch(/^ok {3}s1 \(sim\)/m);
  });

  it("refuses a bad config with a plain message and exit 2", async () => {
    const path = join(dir, "bad.json");
    await writeFile(path, JSON.stringify({ agentId: "x", site: "Not A Name", hosts: [] }));
    const res = await agent(["--config", path, "--check"]);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/invalid agent configuration/);
    expect(res.stderr).toMatch(/site/);
    expect((await agent([])).code).toBe(2);
  });
});
