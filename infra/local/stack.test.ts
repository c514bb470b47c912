import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GetItemCommand, PutItemCommand } from "@aws-sdk/client-dynamodb";
import { afterAll, describe, expect, it } from "vitest";
import { groupAlive, pidAlive } from "./child.ts";
import { localDynamoDbClient } from "./dynamodb.ts";
import { type Stack, type StackOptions, startStack } from "./stack.ts";

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

// The real DynamoDB Local and fauxqs, with stand-ins for the API, consumers and agent (fixtures/):
// this tests the stack's orchestration, not the control plane (test/ does that).
describe("startStack", { timeout: 90_000 }, () => {
  const lines: Array<[string, string]> = [];
  let dataDir = "";
  const stacks: Stack[] = [];
  afterAll(async () => {
    await Promise.all(stacks.map((s) => s.stop()));
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const options = (): StackOptions => ({
    dataDir,
    sites: [
      { name: "east", hosts: [{ id: "e-1", vcpus: 8, memoryMiB: 16_384, devices: { "gpu-a": 1 } }] },
      { name: "west", hosts: [{ id: "w-1", vcpus: 4, memoryMiB: 8_192 }] },
    ],
    schedulerProcesses: 2,
    persist: true,
    delayScale: 0.05,
    entryPoints: {
      api: fixture("fake-api.ts"),
      consumers: fixture("fake-consumers.ts"),
      agent: fixture("fake-agent.ts"),
    },
    extraEnv: { FAKE_STATE_FILE: join(dataDir, "fake-hosts.json") },
    logSink: (source, line) => lines.push([source, line]),
  });
  const allPids = (s: Stack) => Object.values(s.pids);

  it("starts every process, registers hosts, stops them all by pid, and restarts on the same data", async () => {
    dataDir = await mkdtemp(join(tmpdir(), "usher-stack-"));
    const stack = await startStack(options());
    stacks.push(stack);

    expect(Object.keys(stack.pids).sort()).toEqual([
      "agent-east",
      "agent-west",
      "api",
      "consumers",
      "dynamodb",
      "scheduler-1",
      "scheduler-2",
      "sqs",
    ]);
    for (const pid of allPids(stack)) expect(pidAlive(pid)).toBe(true);
    expect(stack.apiUrl).toBe(`http://127.0.0.1:${stack.ports.api}`);
    expect(stack.env.USHER_DEFAULT_SITE).toBe("east");
    expect(stack.env.USHER_AGENT_QUEUE_URL_TEMPLATE).toContain("usher-agent-{site}");

    // The fakes validated their env/config and the API verified the admin token.
    const from = (source: string) => lines.filter(([s]) => s === source).map(([, l]) => l);
    expect(from("agent-east").join("\n")).toContain("agent started");
    expect(from("scheduler-2").join("\n")).toContain('"consumers":"scheduler"');
    expect(from("consumers").join("\n")).toContain('"consumers":"results,sweep,notifier"');
    expect(from("api").filter((l) => l.includes("host registration"))).toHaveLength(2);
    expect(from("api").join("\n")).toContain('"address":"e-1.sim"');
    expect(from("api").join("\n")).toContain('"devices":{"gpu-a":1}');

    const agentConfig = join(dataDir, "agents", "east.json");
    expect((await stat(agentConfig)).mode & 0o777).toBe(0o600);
    const config = JSON.parse(await readFile(agentConfig, "utf8"));
    expect(config.sqs.commandQueueUrl).toBe(stack.resources.queueUrls.agents.east);
    expect(config.hosts[0].sim.statePath).toBe(join(dataDir, "sim", "e-1.json"));

    const ddb = localDynamoDbClient(stack.env.USHER_DYNAMODB_ENDPOINT!);
    await ddb.send(new PutItemCommand({ TableName: "usher", Item: { pk: { S: "k" }, sk: { S: "s" } } }));
    ddb.destroy();

    const token = await stack.userToken("p1");
    expect(token.split(".")).toHaveLength(3);

    const pids = allPids(stack);
    await stack.stop();
    await stack.stop(); // safe twice
    for (const pid of pids) {
      expect(pidAlive(pid)).toBe(false);
      expect(groupAlive(pid)).toBe(false);
    }

    // Same ports and data: DynamoDB kept the item, keys are the same, hosts answer 409 (fine).
    const again = await startStack({
      ...options(),
      apiPort: stack.ports.api,
      dynamodbPort: stack.ports.dynamodb,
      sqsPort: stack.ports.sqs,
    });
    stacks.push(again);
    expect(again.ports).toEqual(stack.ports);
    expect(again.keys).toEqual(stack.keys);
    expect(lines.filter(([, l]) => l.includes("host already registered"))).toHaveLength(2);
    const ddb2 = localDynamoDbClient(again.env.USHER_DYNAMODB_ENDPOINT!);
    const { Item } = await ddb2.send(
      new GetItemCommand({ TableName: "usher", Key: { pk: { S: "k" }, sk: { S: "s" } } }),
    );
    ddb2.destroy();
    expect(Item).toBeDefined();
    const pids2 = allPids(again);
    await again.stop();
    for (const pid of pids2) expect(pidAlive(pid)).toBe(false);
  });

  it("stops everything it started when a child dies on start-up", async () => {
    const before = lines.length;
    const base = options();
    // The fake agent exits at once without --config: an API that dies before it is healthy.
    const failing = { ...base, entryPoints: { ...base.entryPoints, api: fixture("fake-agent.ts") } };
    await expect(startStack(failing)).rejects.toThrow(/api exited \(code 2/);
    const pids: number[] = [];
    for (const [source, line] of lines.slice(before)) {
      if (source !== "stack") continue;
      const entry = JSON.parse(line) as { msg: string; pid?: number; pids?: Record<string, number> };
      if (entry.msg === "started") pids.push(entry.pid!);
      if (entry.msg === "dynamodb and sqs up") pids.push(...Object.values(entry.pids!));
    }
    expect(pids).toHaveLength(6); // dynamodb, sqs, api, consumers, 2 schedulers (agents start after the API is up)
    for (const pid of pids) {
      expect(pidAlive(pid)).toBe(false);
      expect(groupAlive(pid)).toBe(false);
    }
  });
});
