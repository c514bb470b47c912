/**
 * The DNS plugin's control-plane half against real DynamoDB Local and SQS (fauxqs), through the real
 * scheduler, finisher (the IP manager gives addresses) and notification outbox: a started VM's site
 * agent gets a signed `dns` start task with its address; one that gave up its host (destroyed,
 * deleted, found missing) a removal with the address it had, although the VM no longer holds it.
 */
import { DeleteMessageCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { admin, type ServiceBed, startServiceBed } from "../../../test/support/services.ts";
import { actOn, startVm } from "../../../test/support/vm-flows.ts";
import type { Principal } from "../../auth/principal.ts";
import type { AgentTask } from "../../contracts/messages.ts";
import { silentLogger } from "../../log.ts";
import { QueueClient } from "../../queue/sqs.ts";
import type { Deps } from "../../services/context.ts";
import { createHost } from "../../services/hosts.ts";
import { reconcileHost } from "../../services/reconcile.ts";
import { getVmItem } from "../../services/vms.ts";
import { verifyAgentMessage } from "../../signing/envelopes.ts";
import { generateEd25519Jwks, importEd25519 } from "../../signing/keys.ts";
import type { VmItem } from "../../store/items.ts";
import { deliverNotifications } from "../outbox.ts";
import type { Notice } from "../types.ts";
import { dns, removalTarget, startTarget, vmIdOf } from "./dns.ts";
import { ipManager } from "./ipam.ts";

const vm: VmItem = {
  type: "vm",
  id: "vm-1",
  name: "web-1",
  project: "research",
  owner: "u",
  site: "local",
  spec: { vcpus: 1, memoryMiB: 256 },
  labels: {},
  state: "running",
  hostId: "h1",
  network: { range: "net", address: "10.10.0.5", prefixLength: 24 },
  opSeq: 1,
  doneSeq: 1,
  version: 1,
  createdAt: "2026-11-25T00:00:00.000Z",
  updatedAt: "2026-11-25T00:00:00.000Z",
};
const notice = (over: Partial<Notice> = {}): Notice => ({
  event: "vm_released",
  eventId: "ev-1",
  type: "op.succeeded",
  subject: "VM#vm-1",
  project: "research",
  data: { action: "destroy", leftHome: "h1", vm: { name: "web-1", site: "local", network: vm.network } },
  at: "2026-11-25T00:00:00.000Z",
  attempt: 0,
  ...over,
});

describe("dns plugin, pure parts", () => {
  it("is an agent plugin on start and on a VM giving up its host", () => {
    const p = dns();
    expect(p).toMatchObject({ name: "dns", runsIn: "agent", timeoutMs: 5000 });
    expect(Object.keys(p.hooks).sort()).toEqual(["start", "vm_released"]);
    expect(() => dns({ timeoutMs: 0 })).toThrow(/timeoutMs/);
  });

  it("takes a start's records from the VM as it is, and none from a VM without an address", () => {
    expect(vmIdOf({ subject: "VM#vm-1" })).toBe("vm-1");
    expect(vmIdOf({ subject: "HOST#h1" })).toBeUndefined();
    expect(startTarget(vm)).toEqual({
      site: "local",
      hostId: "h1",
      payload: { vmId: "vm-1", name: "web-1", project: "research", address: "10.10.0.5" },
    });
    const { network: _, ...bare } = vm;
    expect(startTarget(bare)).toBeUndefined();
    expect(startTarget(undefined)).toBeUndefined();
  });

  it("takes a removal's records from the event, and none when the VM had no address", () => {
    expect(removalTarget(notice())).toEqual({
      site: "local",
      payload: { vmId: "vm-1", name: "web-1", project: "research", address: "10.10.0.5" },
    });
    expect(removalTarget(notice({ data: { action: "destroy" } }))).toBeUndefined();
    expect(removalTarget(notice({ subject: "HOST#h1" }))).toBeUndefined();
  });
});

describe("dns plugin through the scheduler, finisher and outbox", () => {
  let bed: ServiceBed;
  let deps: Deps;
  let cpKey: CryptoKey;
  const user: Principal = { subject: "u-research", project: "research", roles: ["user"] };

  beforeAll(async () => {
    bed = await startServiceBed();
    const pair = await generateEd25519Jwks("cp-dns");
    cpKey = (await importEd25519(pair.publicJwk)).key;
    deps = {
      ...bed.deps({
        config: {
          plugins: [ipManager({ ranges: [{ name: "net", cidr: "10.10.0.0/24" }] }), dns()],
          notifications: { maxAttempts: 3, retryDelaySeconds: 1, maxDelaySeconds: 1 },
        },
      }),
      signer: await importEd25519(pair.privateJwk),
    };
    await createHost(
      deps,
      { actor: admin.subject, requestId: "req" },
      {
        id: "dns-h1",
        site: "local",
        kind: "sim",
        address: "dns-h1.sim",
        capacity: { vcpus: 64, memoryMiB: 65_536 },
      },
    );
  }, 60_000);
  afterAll(() => bed?.stop());

  /** Takes every message off the site's agent queue; returns the tasks, each verified with the CP key. */
  async function drainTasks(): Promise<AgentTask[]> {
    const url = deps.queues.agentQueueUrl("local");
    const tasks: AgentTask[] = [];
    for (;;) {
      const out = await deps.queues.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
      );
      if (!out.Messages?.length) return tasks;
      for (const m of out.Messages) {
        const verified = await verifyAgentMessage(m.Body ?? "", cpKey, "local");
        if (verified.kind === "task") tasks.push(verified.task);
        await deps.queues.sqs.send(
          new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: m.ReceiptHandle }),
        );
      }
    }
  }
  const tasksAfterDelivery = async (vmId: string) => {
    await deliverNotifications(deps);
    return (await drainTasks()).filter((t) => t.payload.vmId === vmId);
  };

  it("sends a start task with the VM's address, then a destroy task with the address it had", async () => {
    const { vm: started } = await startVm(deps, user, { name: "web-1" });
    const address = started?.network?.address;
    expect(address).toMatch(/^10\.10\.0\.\d+$/);
    const [start, ...rest] = await tasksAfterDelivery(started!.id);
    expect(rest).toEqual([]);
    expect(start).toMatchObject({
      kind: "plugin",
      plugin: "dns",
      event: "start",
      site: "local",
      hostId: "dns-h1",
      payload: { vmId: started!.id, name: "web-1", project: "research", address },
    });

    const { vm: destroyed } = await actOn(deps, user, started!.id, { action: "destroy" });
    expect(destroyed?.network).toBeUndefined(); // released with the destroy
    const removals = await tasksAfterDelivery(started!.id);
    expect(removals).toHaveLength(1);
    expect(removals[0]).toMatchObject({
      plugin: "dns",
      event: "destroy",
      payload: { vmId: started!.id, name: "web-1", project: "research", address },
    });
  });

  it("sends a delete task for a deleted VM, whose record is gone", async () => {
    const { vm: started } = await startVm(deps, user, { name: "web-2" });
    const address = started!.network!.address;
    await tasksAfterDelivery(started!.id);
    const { vm: gone } = await actOn(deps, user, started!.id, { action: "delete" });
    expect(gone).toBeUndefined();
    const tasks = await tasksAfterDelivery(started!.id);
    expect(tasks.map((t) => [t.event, t.payload.address])).toEqual([["delete", address]]);
  });

  it("adds nothing for a start whose notice arrives after the VM was destroyed", async () => {
    const { vm: started } = await startVm(deps, user, { name: "web-3" });
    await actOn(deps, user, started!.id, { action: "destroy" });
    const tasks = await tasksAfterDelivery(started!.id);
    expect(tasks.map((t) => t.event)).toEqual(["destroy"]);
  });

  it("keeps the records of a VM that migrates: it keeps its address on its new host", async () => {
    await createHost(
      deps,
      { actor: admin.subject, requestId: "req" },
      {
        id: "dns-h2",
        site: "local",
        kind: "sim",
        address: "dns-h2.sim",
        capacity: { vcpus: 64, memoryMiB: 65_536 },
      },
    );
    const { vm: started } = await startVm(deps, user, { name: "web-5" });
    const address = started!.network!.address;
    await tasksAfterDelivery(started!.id);
    const target = started!.hostId === "dns-h1" ? "dns-h2" : "dns-h1";
    const { vm: moved, op } = await actOn(deps, admin, started!.id, {
      action: "migrate",
      targetHostId: target,
    });
    expect(op.status).toBe("succeeded");
    expect(moved).toMatchObject({ hostId: target, network: { address } });
    expect(await tasksAfterDelivery(started!.id)).toEqual([]);
  });

  it("removes the records of a VM whose domain vanished (drift, adopt policy) with its address", async () => {
    const { vm: started } = await startVm(deps, user, { name: "web-4" });
    const address = started!.network!.address;
    await tasksAfterDelivery(started!.id);
    const adopt: Deps = { ...deps, config: { ...deps.config, driftPolicy: "adopt" } };
    const later = new Date(Date.now() + 60_000).toISOString();
    const inv = { hostId: started!.hostId!, reachable: true, domains: [] };
    const drifts = await reconcileHost(adopt, inv, later);
    expect(drifts.filter((d) => d.vmId === started!.id)).toHaveLength(1);
    expect((await getVmItem(deps, started!.id))?.network).toBeUndefined();
    const tasks = await tasksAfterDelivery(started!.id);
    expect(tasks.map((t) => [t.event, t.payload.address])).toEqual([["destroy", address]]);
  });

  it("throws when the agent queue refuses the task, so the outbox retries it", async () => {
    const broken = new QueueClient({
      ...deps.queues.config,
      agentQueueUrlTemplate: deps.queues.config.agentQueueUrlTemplate.replace("{site}", "missing-{site}"),
    });
    const ctx = {
      deps: { ...deps, queues: broken },
      log: silentLogger,
      signal: new AbortController().signal,
    };
    await expect(dns().hooks.vm_released?.(ctx, notice())).rejects.toMatchObject({
      code: "queue_send_failed",
    });
  });
});
