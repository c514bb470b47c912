/**
 * Agent tasks end to end in the agent, on a real SQS emulator (fauxqs, in process, on loopback):
 * signed `fence` tasks run their host's fence action and report once; a failing action is retried by
 * redelivery (SQS's visibility timeout) and reported failed only after `taskMaxAttempts`. The fence
 * commands are small shell scripts standing in for a BMC's command-line tool.
 */
import { randomUUID } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentCommand, AgentTask, TaskResult } from "../../shared/contracts/index.ts";
import { createLogger } from "../../shared/log.ts";
import { generateEd25519Jwks, importEd25519, signCommand, signTask } from "../../shared/signing/index.ts";
import { Agent } from "../agent.ts";
import { parseAgentConfig } from "../config.ts";
import { SimWorld } from "../drivers/sim-world.ts";
import { LOCAL_CREDENTIALS, type LocalSqs, startLocalSqs } from "../testing/local-sqs.ts";
import { type ReportReader, readReports, waitFor } from "../testing/reports.ts";

const MAX_ATTEMPTS = 3;
const dir = mkdtempSync(join(tmpdir(), "usher-fence-"));
let sqs: LocalSqs;
let agent: Agent;
let reader: ReportReader;
let world: SimWorld;
let commandQueueUrl: string;
let signer: Awaited<ReturnType<typeof importEd25519>>;
const logs: Record<string, unknown>[] = [];

/** A fence command: counts its runs in `<name>.count`, records its host, and succeeds from run `okFrom`. */
function fenceScript(name: string, okFrom: number): string[] {
  const path = join(dir, `${name}.sh`);
  writeFileSync(
    path,
    [
      "#!/bin/sh",
      'n=$(cat "$1.count" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$1.count"',
      'echo "$USHER_FENCE_HOST_ID $USHER_FENCE_HOST_ADDRESS" > "$1.host"',
      'if [ "$n" -ge "$2" ]; then exit 0; fi',
      'echo "BMC busy (run $n)" >&2; exit 3',
      "",
    ].join("\n"),
  );
  chmodSync(path, 0o755);
  return [path, join(dir, name), String(okFrom)];
}
const runs = (name: string) => Number(readFileSync(join(dir, `${name}.count`), "utf8"));

beforeAll(async () => {
  sqs = await startLocalSqs();
  const cp = await generateEd25519Jwks("cp-1");
  const agentKeys = await generateEd25519Jwks("agent-local");
  signer = await importEd25519(cp.privateJwk);
  const tag = randomUUID().slice(0, 8);
  commandQueueUrl = await sqs.createQueue(`agent-local-${tag}`);
  const resultsQueueUrl = await sqs.createQueue(`results-${tag}`);
  const sim = { capacity: { vcpus: 8, memoryMiB: 8192 }, delayScale: 0.01 };
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
    shutdownGraceSeconds: 2,
    taskMaxAttempts: MAX_ATTEMPTS,
    hosts: [
      { id: "plain", kind: "sim", address: "127.0.0.1", sim },
      {
        id: "flaky",
        kind: "sim",
        address: "127.0.0.2",
        sim,
        fence: { argv: fenceScript("flaky", 3), timeoutSeconds: 1 },
      },
      {
        id: "dead",
        kind: "sim",
        address: "127.0.0.3",
        sim,
        fence: { argv: fenceScript("dead", 99), timeoutSeconds: 1 },
      },
    ],
  });
  world = new SimWorld();
  const logger = createLogger({}, { level: "debug", sink: (l) => logs.push(JSON.parse(l)) });
  agent = new Agent(config, { logger, simWorld: world });
  reader = readReports(sqs, resultsQueueUrl, { local: (await importEd25519(agentKeys.publicJwk)).key });
  await agent.start();
});
afterAll(async () => {
  await agent?.stop();
  await reader?.stop();
  await sqs?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const taskResults = (taskId: string) =>
  reader.reports.filter((r): r is TaskResult => r.type === "task_result" && r.taskId === taskId);

async function sendTask(kind: AgentTask["kind"], hostId: string, payload = {}): Promise<AgentTask> {
  const task: AgentTask = {
    taskId: `task-${randomUUID().slice(0, 8)}`,
    requestId: `req-${kind}`,
    site: "local",
    kind,
    hostId,
    payload,
    deadline: new Date(Date.now() + 60_000).toISOString(),
  };
  await sqs.send(commandQueueUrl, await signTask(task, signer));
  return task;
}
const sendFence = (hostId: string) => sendTask("fence", hostId);

describe("fence tasks", () => {
  it("powers a sim host off: its guests stop, it reports unreachable, and the task reports fenced once", async () => {
    const cmd: AgentCommand = {
      opId: "op-guest",
      requestId: "req-guest",
      action: "start",
      site: "local",
      hostId: "plain",
      vmId: "vm-guest",
      vmName: "guest",
      spec: { vcpus: 1, memoryMiB: 256 },
      deadline: new Date(Date.now() + 60_000).toISOString(),
      attempt: 1,
    };
    await sqs.send(commandQueueUrl, await signCommand(cmd, signer));
    await waitFor(
      () => reader.results(cmd.opId).find((r) => r.status === "succeeded"),
      8_000,
      "guest running",
    );
    expect(world.locate(cmd.vmId)?.domain.state).toBe("running");

    const task = await sendFence("plain");
    const [result] = await waitFor(
      () => taskResults(task.taskId).length > 0 && taskResults(task.taskId),
      8_000,
    );
    expect(result).toMatchObject({ ok: true, kind: "fence", hostId: "plain", data: { fenced: true } });
    expect(world.locate(cmd.vmId)?.domain.state).toBe("stopped");
    expect(world.host("plain")?.reachable).toBe(false);
    const inv = await waitFor(() => reader.inventories().find((i) => i.hosts[0]?.reachable === false), 5_000);
    expect(inv.hosts[0]).toMatchObject({ hostId: "plain", error: { code: "host_unreachable" } });
    await waitFor(async () => (await sqs.counts(commandQueueUrl)).inFlight === 0, 5_000, "task deleted");
    expect(taskResults(task.taskId)).toHaveLength(1);
  });

  it("retries a failing fence by redelivery until it succeeds, and gives up after taskMaxAttempts", async () => {
    const flaky = await sendFence("flaky");
    const dead = await sendFence("dead");
    const [ok] = await waitFor(
      () => taskResults(flaky.taskId).length > 0 && taskResults(flaky.taskId),
      20_000,
    );
    expect(ok).toMatchObject({ ok: true, hostId: "flaky", data: { fenced: true, method: "command" } });
    expect(runs("flaky")).toBe(3);
    expect(readFileSync(join(dir, "flaky.host"), "utf8").trim()).toBe("flaky 127.0.0.2");

    const [failed] = await waitFor(
      () => taskResults(dead.taskId).length > 0 && taskResults(dead.taskId),
      20_000,
    );
    expect(failed).toMatchObject({
      ok: false,
      hostId: "dead",
      error: { code: "fence_failed", message: expect.stringContaining("BMC busy (run 3)") },
      data: { attempts: MAX_ATTEMPTS },
    });
    expect(failed?.data?.fenced).toBeUndefined();
    expect(runs("dead")).toBe(MAX_ATTEMPTS);
    const retried = logs.filter((l) => l.msg === "task failed; left for another delivery");
    expect(retried.filter((l) => l.taskId === flaky.taskId)).toHaveLength(2);
    expect(retried.filter((l) => l.taskId === dead.taskId)).toHaveLength(MAX_ATTEMPTS - 1);
    // Reported once each, and off the queue.
    await waitFor(async () => (await sqs.counts(commandQueueUrl)).visible === 0, 5_000, "queue empty");
    expect(taskResults(flaky.taskId)).toHaveLength(1);
    expect(taskResults(dead.taskId)).toHaveLength(1);
  });

  it("refuses a fence for a host it does not drive, after the same retries", async () => {
    const task = await sendFence("elsewhere");
    const [r] = await waitFor(() => taskResults(task.taskId).length > 0 && taskResults(task.taskId), 20_000);
    expect(r).toMatchObject({ ok: false, error: { code: "host_unknown" } });
  });
});

describe("purge tasks", () => {
  it("destroys a stray domain of a VM on the host named, once, and succeeds when it is already gone", async () => {
    const cmd: AgentCommand = {
      opId: "op-stray",
      requestId: "req-stray",
      action: "start",
      site: "local",
      hostId: "flaky",
      vmId: "vm-stray",
      vmName: "stray",
      spec: { vcpus: 1, memoryMiB: 256 },
      deadline: new Date(Date.now() + 60_000).toISOString(),
      attempt: 1,
    };
    await sqs.send(commandQueueUrl, await signCommand(cmd, signer));
    await waitFor(() => world.locate("vm-stray")?.domain.state === "running", 8_000, "stray running");
    const result = async (task: AgentTask) =>
      (await waitFor(() => taskResults(task.taskId).length > 0 && taskResults(task.taskId), 10_000))[0];

    const purge = await sendTask("purge", "flaky", { vmId: "vm-stray" });
    expect(await result(purge)).toMatchObject({
      ok: true,
      kind: "purge",
      hostId: "flaky",
      data: { vmId: "vm-stray", purged: true, powerState: "absent" },
    });
    expect(world.locate("vm-stray")).toBeUndefined();
    // Again (a second report of the same stray): nothing there, still success.
    expect(await result(await sendTask("purge", "flaky", { vmId: "vm-stray" }))).toMatchObject({ ok: true });
    // A purge naming no VM, or a host this agent does not drive, is refused.
    expect(await result(await sendTask("purge", "flaky"))).toMatchObject({
      ok: false,
      error: { code: "invalid_task" },
    });
  });
});

describe("fence config", () => {
  it("refuses a fence that cannot finish before the task would be delivered again", () => {
    const base = {
      agentId: "a",
      site: "local",
      sqs: { commandQueueUrl: "http://127.0.0.1:1/q/a", resultsQueueUrl: "http://127.0.0.1:1/q/r" },
      controlPlanePublicKey: { kty: "OKP", crv: "Ed25519", x: "x" },
      signingKey: { kty: "OKP", crv: "Ed25519", x: "x", d: "d" },
      visibilityTimeoutSeconds: 60,
    };
    const host = (fence: unknown) => ({
      ...base,
      hosts: [{ id: "k1", kind: "sim", address: "127.0.0.1", fence }],
    });
    expect(() =>
      parseAgentConfig(host({ argv: ["true"], verifyArgv: ["true"], timeoutSeconds: 30 })),
    ).toThrow(/hosts\.0\.fence\.timeoutSeconds: a fence may take 60 s/);
    expect(parseAgentConfig(host({ argv: ["ipmitool", "power", "off"] })).hosts[0]?.fence).toEqual({
      argv: ["ipmitool", "power", "off"],
      timeoutSeconds: 25,
    });
    // The defaults fit: a fence and its verification within the default visibility timeout.
    const { visibilityTimeoutSeconds: _, ...defaults } = base;
    expect(() =>
      parseAgentConfig({
        ...defaults,
        hosts: [{ id: "k1", kind: "sim", address: "127.0.0.1", fence: { argv: ["a"], verifyArgv: ["b"] } }],
      }),
    ).not.toThrow();
  });
});
