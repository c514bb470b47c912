/**
 * The agent against a real SQS emulator (fauxqs, in process, on loopback) with sim hosts: signed
 * commands run, everything else is refused, results and inventory arrive signed.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentCommand } from "../shared/contracts/index.ts";
import { createLogger } from "../shared/log.ts";
import { generateEd25519Jwks, importEd25519, type SigningKey, signCommand } from "../shared/signing/index.ts";
import { Agent } from "./agent.ts";
import { type AgentConfig, parseAgentConfig } from "./config.ts";
import { SimWorld } from "./drivers/sim-world.ts";
import { LOCAL_CREDENTIALS, type LocalSqs, startLocalSqs } from "./testing/local-sqs.ts";
import { type ReportReader, readReports, waitFor } from "./testing/reports.ts";

type Keys = Awaited<ReturnType<typeof generateEd25519Jwks>>;
let sqs: LocalSqs;
let cp: Keys;
let agentKeys: Keys;
let cpSigner: SigningKey;
let strangerSigner: SigningKey;
let agentPublic: CryptoKey;

beforeAll(async () => {
  sqs = await startLocalSqs();
  cp = await generateEd25519Jwks("cp-1");
  agentKeys = await generateEd25519Jwks("agent-local");
  cpSigner = await importEd25519(cp.privateJwk);
  strangerSigner = await importEd25519((await generateEd25519Jwks("stranger")).privateJwk);
  agentPublic = (await importEd25519(agentKeys.publicJwk)).key;
});
afterAll(async () => {
  await sqs?.stop();
});

const sim = (delayScale: number) => ({ capacity: { vcpus: 32, memoryMiB: 65_536 }, delayScale });

/** A fresh agent on fresh queues, with a log capture and a reader of its reports. */
async function harness(over: Partial<Record<keyof AgentConfig, unknown>> = {}) {
  const tag = randomUUID().slice(0, 8);
  const commandQueueUrl = await sqs.createQueue(`agent-local-${tag}`);
  const resultsQueueUrl = await sqs.createQueue(`results-${tag}`);
  const config = parseAgentConfig({
    agentId: "agent-test",
    site: "local",
    sqs: { region: "us-east-1", endpoint: sqs.endpoint, commandQueueUrl, resultsQueueUrl },
    credentials: LOCAL_CREDENTIALS,
    controlPlanePublicKey: cp.publicJwk,
    signingKey: agentKeys.privateJwk,
    pollWaitSeconds: 1,
    visibilityTimeoutSeconds: 2,
    inventoryIntervalSeconds: 0.3,
    shutdownGraceSeconds: 5,
    runningReportAfterSeconds: 0.5,
    hosts: [
      { id: "h1", kind: "sim", address: "127.0.0.1", sim: sim(0.01) },
      { id: "h2", kind: "sim", address: "127.0.0.2", sim: sim(0.01) },
      { id: "slow", kind: "sim", address: "127.0.0.3", sim: sim(3) },
    ],
    ...over,
  });
  const logs: Record<string, unknown>[] = [];
  const logger = createLogger({}, { level: "debug", sink: (l) => logs.push(JSON.parse(l)) });
  const world = new SimWorld();
  const agent = new Agent(config, { logger, simWorld: world });
  const reader = readReports(sqs, resultsQueueUrl, { local: agentPublic });
  return { config, agent, world, logs, reader, commandQueueUrl, resultsQueueUrl };
}

const command = (over: Partial<AgentCommand> = {}): AgentCommand => {
  const id = randomUUID().slice(0, 8);
  return {
    opId: `op-${id}`,
    requestId: `req-${id}`,
    action: "start",
    site: "local",
    hostId: "h1",
    vmId: `vm-${id}`,
    vmName: `web-${id}`,
    spec: { vcpus: 1, memoryMiB: 256 },
    deadline: new Date(Date.now() + 60_000).toISOString(),
    attempt: 1,
    ...over,
  };
};

const finalOf = (reader: ReportReader, opId: string) =>
  waitFor(() => reader.results(opId).find((r) => r.status !== "running"), 8_000, `final result of ${opId}`);

describe("Agent", () => {
  let h: Awaited<ReturnType<typeof harness>>;
  beforeAll(async () => {
    h = await harness();
    await h.agent.start();
    await h.agent.start(); // safe twice
  });
  afterAll(async () => {
    await h?.agent.stop();
    await h?.reader.stop();
  });

  it("reports running, before its result, an operation that outlasts runningReportAfterSeconds", async () => {
    const cmd = command({ hostId: "slow" });
    await sqs.send(h.commandQueueUrl, await signCommand(cmd, cpSigner));
    const final = await finalOf(h.reader, cmd.opId);
    expect(final.status).toBe("succeeded");
    expect(h.reader.results(cmd.opId).map((r) => r.status)).toEqual(["running", "succeeded"]);
  });

  it("runs a re-sent command for an operation still in progress only once", async () => {
    const cmd = command({ hostId: "slow" });
    const token = await signCommand(cmd, cpSigner);
    await sqs.send(h.commandQueueUrl, token);
    await waitFor(() => h.reader.results(cmd.opId).find((r) => r.status === "running"), 8_000, "running");
    await sqs.send(h.commandQueueUrl, token);
    await waitFor(
      () =>
        h.logs.find(
          (l) => l.msg === "duplicate command for an operation in progress dropped" && l.opId === cmd.opId,
        ),
      8_000,
      "duplicate dropped",
    );
    const final = await finalOf(h.reader, cmd.opId);
    expect(final.status).toBe("succeeded");
    expect(h.reader.results(cmd.opId).filter((r) => r.status !== "running")).toHaveLength(1);
    expect(h.logs.filter((l) => l.msg === "command accepted" && l.opId === cmd.opId)).toHaveLength(2);
  });

  it("runs a signed start: one succeeded result, signed by the agent (no running report for a quick one)", async () => {
    const cmd = command();
    await sqs.send(h.commandQueueUrl, await signCommand(cmd, cpSigner));
    const final = await finalOf(h.reader, cmd.opId);
    expect(final).toMatchObject({
      status: "succeeded",
      powerState: "running",
      finalHostId: "h1",
      vmId: cmd.vmId,
    });
    expect(final.hypervisorMs).toBeGreaterThanOrEqual(0);
    expect(h.reader.results(cmd.opId).map((r) => r.status)).toEqual(["succeeded"]);
    expect(h.reader.rejected).toEqual([]);
    expect(h.world.locate(cmd.vmId)?.domain.state).toBe("running");
    const line = h.logs.find((l) => l.msg === "command done" && l.opId === cmd.opId);
    expect(line).toMatchObject({
      requestId: cmd.requestId,
      vmId: cmd.vmId,
      hostId: "h1",
      agentId: "agent-test",
    });
    await waitFor(async () => (await sqs.counts(h.commandQueueUrl)).inFlight === 0, 3_000, "command deleted");
  });

  it("refuses unsigned, foreign-key, tampered, expired and other-site commands without running them", async () => {
    const cmds = [command(), command(), command(), command(), command({ site: "elsewhere" })];
    const [plain, foreign, tampered, expired, otherSite] = cmds as [
      AgentCommand,
      AgentCommand,
      AgentCommand,
      AgentCommand,
      AgentCommand,
    ];
    const good = await signCommand(tampered, cpSigner);
    const [header, , sig] = good.split(".");
    const forged = Buffer.from(JSON.stringify({ cmd: { ...tampered, vmId: "vm-forged" } })).toString(
      "base64url",
    );
    const bodies = [
      JSON.stringify({ cmd: plain }),
      await signCommand(foreign, strangerSigner),
      `${header}.${forged}.${sig}`,
      await signCommand({ ...expired, deadline: new Date(Date.now() - 60_000).toISOString() }, cpSigner),
      await signCommand(otherSite, cpSigner),
    ];
    const before = h.logs.filter((l) => l.msg === "command refused").length;
    for (const body of bodies) await sqs.send(h.commandQueueUrl, body);
    await waitFor(
      () => h.logs.filter((l) => l.msg === "command refused").length === before + 5,
      5_000,
      "5 refusals",
    );
    const reasons = h.logs.filter((l) => l.msg === "command refused").map((l) => String(l.reason));
    expect(reasons.slice(before).join("\n")).toMatch(/expired/);
    expect(reasons.slice(before).join("\n")).toMatch(/bad signature/);
    expect(reasons.slice(before).join("\n")).toMatch(/claim aud rejected/);
    for (const c of cmds) {
      expect(h.world.locate(c.vmId)).toBeUndefined();
      expect(h.reader.results(c.opId)).toEqual([]);
    }
    expect(h.world.locate("vm-forged")).toBeUndefined();
    await waitFor(async () => (await sqs.counts(h.commandQueueUrl)).inFlight === 0, 3_000, "refused deleted");
    expect(await sqs.counts(h.commandQueueUrl)).toEqual({ visible: 0, inFlight: 0 });
  });

  it("a start delivered again after it ran (say, the agent died before deleting it) makes one domain", async () => {
    const cmd = command({ hostId: "h2" });
    const token = await signCommand(cmd, cpSigner);
    await sqs.send(h.commandQueueUrl, token);
    await finalOf(h.reader, cmd.opId);
    await sqs.send(h.commandQueueUrl, token);
    await waitFor(
      () => h.reader.results(cmd.opId).filter((r) => r.status === "succeeded").length === 2,
      5_000,
    );
    const domains = [...(h.world.host("h2")?.domains.values() ?? [])].filter((d) => d.vmId === cmd.vmId);
    expect(domains).toHaveLength(1);
  });

  it("fails a command for a host it does not drive with host_unknown", async () => {
    const cmd = command({ hostId: "h9" });
    await sqs.send(h.commandQueueUrl, await signCommand(cmd, cpSigner));
    expect(await finalOf(h.reader, cmd.opId)).toMatchObject({
      status: "failed",
      error: { code: "host_unknown" },
    });
  });

  it("keeps a long migration hidden past the visibility timeout, so it is not redelivered", async () => {
    const cmd = command({ hostId: "slow" });
    await sqs.send(h.commandQueueUrl, await signCommand(cmd, cpSigner));
    await finalOf(h.reader, cmd.opId);
    const target = { hostId: "h1", address: "127.0.0.1", kind: "sim" } as const;
    const mig = command({ ...cmd, opId: `op-mig-${cmd.vmId}`, action: "migrate", target, live: true });
    const t0 = Date.now();
    await sqs.send(h.commandQueueUrl, await signCommand(mig, cpSigner));
    const final = await finalOf(h.reader, mig.opId);
    expect(Date.now() - t0).toBeGreaterThan(2_500); // longer than the 2 s visibility timeout
    expect(final).toMatchObject({ status: "succeeded", powerState: "running", finalHostId: "h1" });
    const running = h.reader.results(mig.opId).filter((r) => r.status === "running");
    expect(running.filter((r) => r.progressPercent === undefined)).toHaveLength(1); // received once
    expect(running.map((r) => r.progressPercent).filter(Boolean)).toEqual([30, 60, 90]);
    expect(h.logs.some((l) => l.msg === "visibility extended" && l.opId === mig.opId)).toBe(true);
    expect(h.world.locate(cmd.vmId)?.host.id).toBe("h1");
  });

  it("reports inventory on a period, an unreachable host as reachable: false", async () => {
    const inv = await waitFor(() => h.reader.inventories().at(-1));
    expect(inv).toMatchObject({ site: "local", agentId: "agent-test" });
    expect(inv.hosts.map((x) => x.hostId)).toEqual(["h1", "h2", "slow"]);
    expect(inv.hosts[0]).toMatchObject({ reachable: true, free: expect.any(Object) });
    h.world.setReachable("h2", false);
    const down = await waitFor(() => h.reader.inventories().find((i) => i.hosts[1]?.reachable === false));
    expect(down.hosts[1]).toMatchObject({
      hostId: "h2",
      reachable: false,
      domains: [],
      error: { code: "host_unreachable" },
    });
    h.world.setReachable("h2", true);
  });
});

describe("Agent stop and failures", () => {
  it("takes no more than maxConcurrentOps; stop() is safe twice and hands back what did not finish", async () => {
    const h = await harness({ maxConcurrentOps: 1, shutdownGraceSeconds: 0.2 });
    await h.agent.start();
    const cmds = [command({ hostId: "slow" }), command({ hostId: "slow" })];
    for (const c of cmds) await sqs.send(h.commandQueueUrl, await signCommand(c, cpSigner));
    await waitFor(() => h.reader.results().some((r) => r.status === "running"), 5_000, "a running report");
    await new Promise((r) => setTimeout(r, 300));
    expect(h.agent.inFlight).toBe(1);
    expect(await sqs.counts(h.commandQueueUrl)).toEqual({ visible: 1, inFlight: 1 }); // backpressure
    const t0 = Date.now();
    await Promise.all([h.agent.stop(), h.agent.stop()]);
    await h.agent.stop();
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(await sqs.counts(h.commandQueueUrl)).toEqual({ visible: 2, inFlight: 0 }); // handed back
    expect(h.logs.some((l) => l.msg === "command handed back")).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    expect(h.reader.results().filter((r) => r.status !== "running")).toEqual([]);
    await h.reader.stop();
  });

  it("leaves the command on the queue when its result cannot be sent", async () => {
    const h = await harness();
    const broken = parseAgentConfig({
      ...h.config,
      sqs: { ...h.config.sqs, resultsQueueUrl: h.config.sqs.resultsQueueUrl.replace(/results-/, "missing-") },
    });
    const agent = new Agent(broken, {
      logger: createLogger({}, { sink: (l) => h.logs.push(JSON.parse(l)) }),
      sendRetry: { attempts: 2, baseDelayMs: 10 },
    });
    await agent.start();
    const cmd = command();
    await sqs.send(h.commandQueueUrl, await signCommand(cmd, cpSigner));
    await waitFor(
      () => h.logs.some((l) => l.msg === "result not sent; command left on the queue for redelivery"),
      5_000,
    );
    await agent.stop();
    const counts = await sqs.counts(h.commandQueueUrl);
    expect(counts.visible + counts.inFlight).toBe(1);
    await h.agent.stop();
    await h.reader.stop();
  });

  it("stop() before start() is harmless", async () => {
    const h = await harness();
    await h.agent.stop();
    await h.agent.stop();
    await h.reader.stop();
  });
});
