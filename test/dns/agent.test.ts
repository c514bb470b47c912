/**
 * The bridge agent runs signed `dns` tasks against a real BIND 9 `named` on loopback: the agent polls
 * an SQS emulator (fauxqs, in process, on loopback), verifies each task, runs the DNS plugin with its
 * own `dns` settings and reports a signed `task_result`; `dig` then sees the A and PTR records appear
 * and go. Skips, saying why, where named is not installed or cannot run (as test/dns/update.test.ts).
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Agent } from "../../bridge-agent/agent.ts";
import { parseAgentConfig } from "../../bridge-agent/config.ts";
import { LOCAL_CREDENTIALS, type LocalSqs, startLocalSqs } from "../../bridge-agent/testing/local-sqs.ts";
import { type ReportReader, readReports, waitFor } from "../../bridge-agent/testing/reports.ts";
import type { AgentTask, TaskResult } from "../../shared/contracts/index.ts";
import { silentLogger } from "../../shared/log.ts";
import { generateEd25519Jwks, importEd25519, type SigningKey, signTask } from "../../shared/signing/index.ts";
import { type Named, namedSupport, REVERSE_ZONE, startNamed, ZONE } from "./named.ts";

const support = namedSupport();
if (!support.ok) console.warn(`\n*** DNS agent suite skipped: ${support.reason} ***\n`);

type Harness = { agent: Agent; reader: ReportReader; commandQueueUrl: string };

describe.skipIf(!support.ok)("the agent's dns plugin against BIND named", () => {
  let named: Named;
  let sqs: LocalSqs;
  let cpSigner: SigningKey;
  let cp: Awaited<ReturnType<typeof generateEd25519Jwks>>;
  let agentKeys: Awaited<ReturnType<typeof generateEd25519Jwks>>;
  let agentPublic: CryptoKey;
  const harnesses: Harness[] = [];
  let cannotRun: string | undefined;

  beforeAll(async () => {
    try {
      named = await startNamed();
    } catch (err) {
      if (process.env.CI) throw err;
      cannotRun = err instanceof Error ? err.message : String(err);
      console.warn(`\n*** DNS agent suite skipped: named cannot run: ${cannotRun} ***\n`);
      return;
    }
    sqs = await startLocalSqs();
    cp = await generateEd25519Jwks("cp-dns");
    agentKeys = await generateEd25519Jwks("agent-dns");
    cpSigner = await importEd25519(cp.privateJwk);
    agentPublic = (await importEd25519(agentKeys.publicJwk)).key;
  });

  beforeEach((ctx) => {
    if (cannotRun) ctx.skip(`named cannot run: ${cannotRun}`);
  });

  afterAll(async () => {
    for (const h of harnesses) {
      await h.agent.stop();
      await h.reader.stop();
    }
    await sqs?.stop();
    if (named) {
      await named.stop();
      expect(() => process.kill(named.pid, 0)).toThrow(); // ended, by its pid
    }
  });

  /** An agent on fresh queues; `dns` settings pointing at named unless `dns: null`. */
  async function harness(over: { dns?: Record<string, unknown> | null; taskMaxAttempts?: number } = {}) {
    const tag = randomUUID().slice(0, 8);
    const commandQueueUrl = await sqs.createQueue(`agent-dns-${tag}`, 1);
    const resultsQueueUrl = await sqs.createQueue(`results-dns-${tag}`);
    const dns =
      over.dns === null
        ? {}
        : {
            dns: over.dns ?? {
              server: { address: named.address, port: named.port },
              tsig: named.updateKey,
              zone: ZONE,
              reverseZone: REVERSE_ZONE,
              ttlSeconds: 60,
              timeoutMs: 3_000,
            },
          };
    const config = parseAgentConfig({
      agentId: `agent-dns-${tag}`,
      site: "local",
      sqs: { region: "us-east-1", endpoint: sqs.endpoint, commandQueueUrl, resultsQueueUrl },
      credentials: LOCAL_CREDENTIALS,
      controlPlanePublicKey: cp.publicJwk,
      signingKey: agentKeys.privateJwk,
      pollWaitSeconds: 1,
      visibilityTimeoutSeconds: 2,
      inventoryIntervalSeconds: 60,
      shutdownGraceSeconds: 5,
      taskMaxAttempts: over.taskMaxAttempts ?? 3,
      hosts: [{ id: "h1", kind: "sim", address: "127.0.0.1" }],
      ...dns,
    });
    const agent = new Agent(config, { logger: silentLogger });
    const reader = readReports(sqs, resultsQueueUrl, { local: agentPublic });
    const h = { agent, reader, commandQueueUrl };
    harnesses.push(h);
    await agent.start();
    return h;
  }

  const task = (
    event: string,
    payload: Record<string, unknown>,
    over: Partial<AgentTask> = {},
  ): AgentTask => ({
    taskId: `task-${randomUUID()}`,
    requestId: `req-${randomUUID().slice(0, 8)}`,
    site: "local",
    kind: "plugin",
    plugin: "dns",
    event,
    payload,
    deadline: new Date(Date.now() + 60_000).toISOString(),
    ...over,
  });

  /** Sends the task signed by the control plane and waits for the agent's report on it. */
  async function run(h: Harness, t: AgentTask, count = 1): Promise<TaskResult> {
    await sqs.send(h.commandQueueUrl, await signTask(t, cpSigner));
    const results = () =>
      h.reader.reports.filter((r): r is TaskResult => r.type === "task_result" && r.taskId === t.taskId);
    await waitFor(() => results().length >= count, 20_000, `result of ${t.taskId}`);
    return results().at(-1)!;
  }

  const vm = { vmId: "vm-dns-1", name: "web-1", project: "research", address: "10.10.0.21" };
  const host = `web-1.research.${ZONE}`;
  const ptr = "21.0.10.10.in-addr.arpa";

  it("adds A and PTR on start, idempotently, and removes them on destroy", async () => {
    const h = await harness();
    const start = task("start", vm);
    const added = await run(h, start);
    expect(added).toMatchObject({
      ok: true,
      plugin: "dns",
      event: "start",
      data: { vmId: "vm-dns-1", records: "added", name: host, ptr, address: "10.10.0.21" },
    });
    expect(await named.dig(host, "A")).toEqual(["10.10.0.21"]);
    expect(await named.dig(ptr, "PTR")).toEqual([`${host}.`]);

    // The same task delivered again (say the agent died before deleting it): still one record each.
    expect(await run(h, start, 2)).toMatchObject({ ok: true });
    expect(await named.dig(host, "A")).toEqual(["10.10.0.21"]);
    expect(await named.dig(ptr, "PTR")).toEqual([`${host}.`]);

    const destroy = task("destroy", vm);
    expect(await run(h, destroy)).toMatchObject({ ok: true, data: { records: "removed" } });
    expect(await named.dig(host, "A")).toEqual([]);
    expect(await named.dig(ptr, "PTR")).toEqual([]);
    // Removing what is already gone succeeds.
    expect(await run(h, destroy, 2)).toMatchObject({ ok: true });
  });

  it("replaces a name's address rather than adding a second one, and delete removes it", async () => {
    const h = await harness();
    const other = { ...vm, vmId: "vm-dns-2", name: "db-1", address: "10.10.0.31" };
    const name = `db-1.research.${ZONE}`;
    await run(h, task("start", other));
    await run(h, task("start", { ...other, address: "10.10.0.32" }));
    expect(await named.dig(name, "A")).toEqual(["10.10.0.32"]);
    expect(await named.dig("32.0.10.10.in-addr.arpa", "PTR")).toEqual([`${name}.`]);
    expect(await run(h, task("delete", { ...other, address: "10.10.0.32" }))).toMatchObject({ ok: true });
    expect(await named.dig(name, "A")).toEqual([]);
    expect(await named.dig("32.0.10.10.in-addr.arpa", "PTR")).toEqual([]);
  });

  it("names a project that is not a DNS label by its label with a hash", async () => {
    const h = await harness();
    const r = await run(h, task("start", { ...vm, vmId: "vm-dns-3", name: "app", project: "Team A" }));
    expect(r.ok).toBe(true);
    const name = String(r.data?.name);
    expect(name).toMatch(new RegExp(`^app\\.team-a-[0-9a-f]{8}\\.${ZONE.replace(".", "\\.")}$`));
    expect(await named.dig(name, "A")).toEqual(["10.10.0.21"]);
    await run(h, task("destroy", { ...vm, vmId: "vm-dns-3", name: "app", project: "Team A" }));
    expect(await named.dig(name, "A")).toEqual([]);
  });

  it("reports plugin_unconfigured from an agent without dns settings", async () => {
    const h = await harness({ dns: null, taskMaxAttempts: 1 });
    const r = await run(h, task("start", { ...vm, vmId: "vm-dns-4", name: "lost" }));
    expect(r).toMatchObject({ ok: false, error: { code: "plugin_unconfigured" } });
    expect(await named.dig(`lost.research.${ZONE}`, "A")).toEqual([]);
  });

  it("reports the server's refusal with its stable code after the agent's attempts", async () => {
    const h = await harness({
      taskMaxAttempts: 2,
      dns: {
        server: { address: named.address, port: named.port },
        tsig: named.deniedKey,
        zone: ZONE,
        reverseZone: REVERSE_ZONE,
        timeoutMs: 3_000,
      },
    });
    const r = await run(h, task("start", { ...vm, vmId: "vm-dns-5", name: "denied" }));
    expect(r).toMatchObject({ ok: false, error: { code: "dns_refused" }, data: { attempts: 2 } });
    expect(await named.dig(`denied.research.${ZONE}`, "A")).toEqual([]);
  });
});
