import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadAgentConfig, parseAgentConfig, simSettings } from "./config.ts";

const key = { kty: "OKP", crv: "Ed25519", x: "abc" };
const minimal = {
  agentId: "a1",
  site: "local",
  sqs: { commandQueueUrl: "http://127.0.0.1:1/q/agent", resultsQueueUrl: "http://127.0.0.1:1/q/results" },
  controlPlanePublicKey: key,
  signingKey: { ...key, d: "def" },
  hosts: [{ id: "sim-1", kind: "sim", address: "127.0.0.1" }],
};

describe("agent config", () => {
  const dir = mkdtempSync(join(tmpdir(), "usher-agent-config-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("fills in defaults", () => {
    const cfg = parseAgentConfig(minimal);
    expect(cfg).toMatchObject({
      pollWaitSeconds: 20,
      visibilityTimeoutSeconds: 60,
      maxConcurrentOps: 8,
      inventoryIntervalSeconds: 30,
      shutdownGraceSeconds: 30,
      logLevel: "info",
      sqs: { region: "us-east-1" },
    });
    expect(simSettings(cfg.hosts[0]!)).toMatchObject({
      delayScale: 1,
      images: ["debian-12", "ubuntu-24.04", "alpine-3.20"],
    });
  });

  it("names every bad field in one error", () => {
    const bad = { ...minimal, signingKey: key, pollWaitSeconds: 21 }; // signingKey without its private part
    expect(() => parseAgentConfig(bad)).toThrow(/signingKey\.d:[\s\S]*pollWaitSeconds:/);
  });

  it("refuses duplicate host ids and sim settings on a real host", () => {
    const hosts = [minimal.hosts[0], { ...minimal.hosts[0], kind: "kvm", sim: {} }];
    expect(() => parseAgentConfig({ ...minimal, hosts })).toThrow(
      /duplicate host id sim-1[\s\S]*hosts\.1\.sim/,
    );
  });

  it("loads the example config and reports unreadable files plainly", () => {
    expect(loadAgentConfig(new URL("./example.config.json", import.meta.url).pathname).hosts[0]?.kind).toBe(
      "sim",
    );
    const path = join(dir, "broken.json");
    writeFileSync(path, "{ not json");
    expect(() => loadAgentConfig(path)).toThrow(/not valid JSON/);
    expect(() => loadAgentConfig(join(dir, "absent.json"))).toThrow(/cannot read/);
  });
});
