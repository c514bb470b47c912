/**
 * Host maintenance through the whole local stack (API, queues, consumers, sweep, agent, simulated
 * hosts): a drained host's running VMs end up running elsewhere and the host reports drained; a host
 * that stops answering goes down, is fenced (the simulated host powered off by its agent), and only
 * after the admin confirms are its VMs restarted elsewhere, never running twice.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../shared/contracts/host.ts";
import type { Operation, Vm } from "../shared/contracts/vm.ts";
import { startTestStack, type TestStack } from "./support/stack.ts";

let t: TestStack;
let token: string;

beforeAll(async () => {
  t = await startTestStack({
    agentInventoryIntervalSeconds: 2,
    extraEnv: { USHER_HOST_DOWN_AFTER_SECONDS: "10", USHER_EVACUATE_CONFIRM: "agent+admin" },
  });
  token = await t.userToken("maint", "mia");
});
afterAll(() => t?.stop());

const vm = async (id: string) => (await t.api<Vm>(`/v1/vms/${id}`, { token })).body;
const host = async (id: string) => (await t.api<Host>(`/v1/hosts/${id}`)).body;

async function act(vmId: string, action: string, extra: Record<string, unknown> = {}) {
  const res = await t.api<{ operation: Operation }>(`/v1/vms/${vmId}/actions`, {
    json: { action, ...extra },
    token: extra.targetHostId ? t.adminToken : token,
  });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  const op = await t.waitForOperation(res.body.operation.id, token);
  expect(op.status, `${action}: ${JSON.stringify(op.error)}`).toBe("succeeded");
  return op;
}

/** A running VM on `hostId` (placed by the scheduler, then moved there by an admin if need be). */
async function runningOn(name: string, hostId: string): Promise<Vm> {
  const res = await t.api<{ vm: Vm; operation: Operation }>("/v1/vms", {
    json: { name, vcpus: 1, memoryMiB: 512 },
    token,
  });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  expect((await t.waitForOperation(res.body.operation.id, token)).status).toBe("succeeded");
  if ((await vm(res.body.vm.id)).hostId !== hostId)
    await act(res.body.vm.id, "migrate", { targetHostId: hostId });
  const placed = await vm(res.body.vm.id);
  expect(placed).toMatchObject({ state: "running", hostId });
  return placed;
}

async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** What the simulated hosts hold (their state files, as the agent keeps them). */
async function simDomains() {
  const out: { hostId: string; vmId: string; state: string }[] = [];
  const off: string[] = [];
  for (const id of ["host-1", "host-2", "host-3"]) {
    const file = JSON.parse(await readFile(join(t.dataDir, "sim", `${id}.json`), "utf8").catch(() => "{}"));
    for (const d of file.domains ?? []) out.push({ hostId: id, vmId: d.vmId, state: d.state });
    if (file.poweredOff) off.push(id);
  }
  return { domains: out, off };
}

describe("host maintenance on simulated hosts", () => {
  it("drains a host: its running VMs live-migrate to other hosts and it reports drained", async () => {
    const vms = [
      await runningOn("dr-1", "host-1"),
      await runningOn("dr-2", "host-1"),
      await runningOn("dr-3", "host-1"),
    ];
    const started = await t.api<Host>("/v1/hosts/host-1/drain", { method: "POST" });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    // Simulated migrations are quick: some may be done by the time the answer is made.
    expect(started.body).toMatchObject({ state: "draining", drain: { requestedBy: "local-admin" } });
    expect(started.body.drain?.remaining).toBeLessThanOrEqual(3);
    const forbidden = await t.api("/v1/hosts/host-1/drain", { method: "POST", token });
    expect(forbidden.status).toBe(403);

    const drained = await until("host-1 drained", async () => {
      const h = await host("host-1");
      return h.state === "drained" && h;
    });
    expect(drained.drain).toMatchObject({ remaining: 0, failures: 0 });
    expect(drained.allocated).toMatchObject({ vcpus: 0, memoryMiB: 0 });
    const { domains } = await simDomains();
    for (const v of vms) {
      const now = await vm(v.id);
      expect(now.state).toBe("running");
      expect(now.hostId).not.toBe("host-1");
      expect(domains.filter((d) => d.vmId === v.id)).toEqual([
        { hostId: now.hostId, vmId: v.id, state: "running" },
      ]);
    }
    const ops = (await t.api<{ items: Operation[] }>(`/v1/operations?vmId=${vms[0]!.id}`, { token })).body
      .items;
    expect(ops.filter((o) => o.action === "migrate" && o.args.live === true)).toHaveLength(1);

    const enabled = await t.api<Host>("/v1/hosts/host-1/enable", { method: "POST" });
    expect(enabled.body).toMatchObject({ state: "enabled", drain: null });
  });

  it("evacuates a host that went down: fenced first, VMs restarted elsewhere only after confirmation", async () => {
    await runningOn("ev-1", "host-2");
    await runningOn("ev-2", "host-2");
    const stopped = await runningOn("ev-3", "host-2");
    await act(stopped.id, "shutdown");
    // Every VM on host-2 (the drain above may have moved some there too).
    const all = (await t.api<{ items: Vm[] }>("/v1/vms?limit=200", { token })).body.items;
    const running = all.filter((v) => v.hostId === "host-2" && v.state === "running");
    expect(running.length).toBeGreaterThanOrEqual(2);
    const refused = await t.api("/v1/hosts/host-3/evacuate", { method: "POST" });
    expect(refused.status).toBe(409);

    // host-2 stops answering its agent; the sweep marks it down.
    await writeFile(join(t.dataDir, "sim", "host-2.json.unreachable"), "");
    await until("host-2 down", async () => (await host("host-2")).state === "down");
    const res = await t.api<Host>("/v1/hosts/host-2/evacuate", { method: "POST" });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    expect(res.body).toMatchObject({ state: "fencing", evacuation: { status: "fencing" } });

    const fenced = await until("fence reported", async () => {
      const h = await host("host-2");
      return h.evacuation?.status === "awaiting_confirmation" && h;
    });
    expect(fenced).toMatchObject({ state: "fenced", evacuation: { remaining: running.length + 1, vms: [] } });
    // Powered off, and nothing restarted yet: the VMs are still recorded on host-2.
    let sim = await simDomains();
    expect(sim.off).toEqual(["host-2"]);
    expect(sim.domains.filter((d) => d.state === "running" && d.hostId === "host-2")).toEqual([]);
    for (const v of [...running, stopped]) expect((await vm(v.id)).hostId).toBe("host-2");

    const confirmed = await t.api<Host>("/v1/hosts/host-2/evacuate/confirm", { method: "POST" });
    expect(confirmed.status, JSON.stringify(confirmed.body)).toBe(202);
    const done = await until("evacuation done", async () => {
      const h = await host("host-2");
      return h.evacuation?.status === "done" && h;
    });
    expect(done).toMatchObject({ state: "fenced", evacuation: { remaining: 0 } });
    expect(done.evacuation?.vms).toHaveLength(running.length + 1);
    for (const v of running) {
      const restart = done.evacuation?.vms.find((e) => e.vmId === v.id)?.restartOpId;
      expect(restart).toEqual(expect.any(String));
      expect((await t.waitForOperation(restart!, token)).status).toBe("succeeded");
      const now = await vm(v.id);
      expect(now.state).toBe("running");
      expect(["host-1", "host-3"]).toContain(now.hostId);
    }
    expect(await vm(stopped.id)).toMatchObject({ state: "stopped", hostId: null });

    // Never two running copies: each VM runs on exactly one host.
    sim = await simDomains();
    for (const v of running) {
      expect(sim.domains.filter((d) => d.vmId === v.id && d.state === "running")).toHaveLength(1);
    }
    expect((await host("host-2")).allocated).toMatchObject({ vcpus: 0, memoryMiB: 0 });

    // The failed host, empty now, can be unregistered (admins only); an enabled one cannot.
    expect((await t.api("/v1/hosts/host-3", { method: "DELETE" })).status).toBe(409);
    expect((await t.api("/v1/hosts/host-2", { method: "DELETE", token })).status).toBe(403);
    const gone = await t.api<Host>("/v1/hosts/host-2", { method: "DELETE" });
    expect(gone.status, JSON.stringify(gone.body)).toBe(200);
    expect(gone.body).toMatchObject({ id: "host-2", state: "fenced" });
    expect((await t.api("/v1/hosts/host-2")).status).toBe(404);
    const events = await t.api<{ items: { type: string }[] }>("/v1/events?subject=HOST%23host-2&limit=50");
    expect(events.body.items.map((e) => e.type)).toContain("host.unregistered");
  });
});
