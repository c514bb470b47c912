/**
 * The whole stack on real hypervisors: API → queues → consumers → agent → SSH → virsh, on the KVM
 * test bed (two libvirt hosts, each with its own sshd, in mount namespaces on loopback; KVM where
 * /dev/kvm exists, TCG otherwise). Small diskless guests. Skipped, with the reason printed, where the
 * machine cannot host the bed (not root, no libvirt/qemu/sshd).
 */
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../shared/contracts/host.ts";
import type { Operation, Vm } from "../../shared/contracts/vm.ts";
import { startTestStack, type TestStack } from "../support/stack.ts";
import { kvmTestbedSupport, stackHosts, startKvmTestbed, type Testbed } from "./testbed.ts";

const support = kvmTestbedSupport();
if (!support.ok) console.warn(`\n*** KVM suite skipped: ${support.reason} ***\n`);

const SITE = "lab";
let bed: Testbed;
let t: TestStack;
let token: string;

describe.skipIf(!support.ok)("KVM hosts through the whole stack", () => {
  beforeAll(async () => {
    bed = await startKvmTestbed({ basePort: "auto" });
    t = await startTestStack({
      sites: [
        {
          name: SITE,
          hosts: stackHosts(bed),
        },
      ],
      agentInventoryIntervalSeconds: 2,
      // A killed agent's command comes back after this; a diskless guest ignores ACPI, so shutdown forces.
      agentSettings: { visibilityTimeoutSeconds: 8, guestShutdownTimeoutSeconds: 2, pollWaitSeconds: 2 },
      extraEnv: { USHER_DRIFT_POLICY: "error" },
    });
    token = await t.userToken("kvm", "kim");
  }, 240_000);
  afterAll(async () => {
    await t?.stop();
    await bed?.stop();
  }, 120_000);

  const domstate = async (hostId: string, vmId: string) => {
    const out = await bed.exec(hostId, ["virsh", "-c", "qemu:///system", "domstate", `usher-${vmId}`]);
    return out.code === 0 ? out.stdout.trim() : "absent";
  };
  const domainsOf = async (vmId: string) => {
    const found: string[] = [];
    for (const h of bed.hosts) {
      const out = await bed.exec(h.id, ["virsh", "-c", "qemu:///system", "list", "--all", "--name"]);
      for (const name of out.stdout.split("\n")) if (name.trim() === `usher-${vmId}`) found.push(h.id);
    }
    return found;
  };
  const create = async (name: string, extra: Record<string, unknown> = {}) => {
    const res = await t.api<{ vm: Vm; operation: Operation }>("/v1/vms", {
      method: "POST",
      token,
      json: { name, vcpus: 1, memoryMiB: 64, ...extra },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return res.body;
  };
  const act = async (vmId: string, action: string, extra: Record<string, unknown> = {}, as = token) => {
    const res = await t.api<{ operation: Operation }>(`/v1/vms/${vmId}/actions`, {
      method: "POST",
      token: as,
      json: { action, ...extra },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return res.body.operation;
  };
  const vm = async (id: string) => (await t.api<Vm>(`/v1/vms/${id}`, { token })).body;
  const host = async (id: string) => (await t.api<Host>(`/v1/hosts/${id}`)).body;

  it("runs every lifecycle operation, with the API's state matching virsh domstate", async () => {
    const { vm: created, operation } = await create("life");
    expect((await t.waitForOperation(operation.id, token)).status).toBe("succeeded");
    const hostId = (await vm(created.id)).hostId!;
    expect(await domstate(hostId, created.id)).toBe("running");
    const steps: [string, string, string][] = [
      ["pause", "paused", "paused"],
      ["unpause", "running", "running"],
      ["reboot", "running", "running"],
      ["cycle", "running", "running"],
      ["suspend", "suspended", "shut off"],
      ["resume", "running", "running"],
      ["shutdown", "stopped", "shut off"],
      ["start", "running", "running"],
    ];
    for (const [action, apiState, virshState] of steps) {
      const op = await t.waitForOperation((await act(created.id, action)).id, token);
      expect(op.status, `${action}: ${JSON.stringify(op.error)}`).toBe("succeeded");
      expect((await vm(created.id)).state, action).toBe(apiState);
      expect(await domstate(hostId, created.id), action).toBe(virshState);
    }
    const destroy = await t.waitForOperation((await act(created.id, "destroy")).id, token);
    expect(destroy.status).toBe("succeeded");
    expect(await domainsOf(created.id)).toEqual([]);
    expect((await vm(created.id)).state).toBe("destroyed");
  });

  it("live-migrates a running guest from host 1 to host 2, capacity moving with it", async () => {
    const [h1, h2] = bed.hosts.map((h) => h.id) as [string, string];
    const { vm: created, operation } = await create("mover");
    await t.waitForOperation(operation.id, token);
    let placed = await vm(created.id);
    if (placed.hostId !== h1) {
      await t.waitForOperation(
        (await act(created.id, "migrate", { targetHostId: h1 }, t.adminToken)).id,
        token,
      );
      placed = await vm(created.id);
    }
    expect(placed.hostId).toBe(h1);
    const before = [await host(h1), await host(h2)];
    const op = await act(created.id, "migrate", { targetHostId: h2, live: true }, t.adminToken);
    // While it moves, the guest keeps running on the source.
    const during = await domstate(h1, created.id);
    expect(["running", "absent"]).toContain(during);
    const done = await t.waitForOperation(op.id, token);
    expect(done.status, JSON.stringify(done.error)).toBe("succeeded");
    expect(await domstate(h2, created.id)).toBe("running");
    expect(await domainsOf(created.id)).toEqual([h2]);
    expect(await vm(created.id)).toMatchObject({ state: "running", hostId: h2 });
    const after = [await host(h1), await host(h2)];
    expect(before[0]!.allocated.memoryMiB - after[0]!.allocated.memoryMiB).toBe(64);
    expect(after[1]!.allocated.memoryMiB - before[1]!.allocated.memoryMiB).toBe(64);
  });

  it("drains a host: its running guests live-migrate to the other host and it reports drained", async () => {
    const [h1, h2] = bed.hosts.map((h) => h.id) as [string, string];
    const guests: string[] = [];
    for (const name of ["drain-a", "drain-b"]) {
      const { vm: created, operation } = await create(name);
      expect((await t.waitForOperation(operation.id, token)).status).toBe("succeeded");
      if ((await vm(created.id)).hostId !== h1) {
        const op = await act(created.id, "migrate", { targetHostId: h1 }, t.adminToken);
        expect((await t.waitForOperation(op.id, token)).status).toBe("succeeded");
      }
      expect(await domstate(h1, created.id)).toBe("running");
      guests.push(created.id);
    }
    const drain = await t.api<Host>(`/v1/hosts/${h1}/drain`, { method: "POST", token: t.adminToken });
    expect(drain.status, JSON.stringify(drain.body)).toBe(202);
    expect(drain.body.state).toBe("draining");

    // A placement while the host drains goes elsewhere.
    const { vm: fresh, operation } = await create("drain-new");
    expect((await t.waitForOperation(operation.id, token)).status).toBe("succeeded");
    expect((await vm(fresh.id)).hostId).toBe(h2);
    guests.push(fresh.id);

    // Two live migrations at once: about a minute each under TCG on a 2-core machine.
    const until = Date.now() + 240_000;
    let drained = await host(h1);
    while (drained.state !== "drained" && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 500));
      drained = await host(h1);
    }
    expect(drained.state, JSON.stringify(drained.drain)).toBe("drained");
    expect(drained.drain).toMatchObject({ remaining: 0, failures: 0 });
    expect(drained.allocated).toMatchObject({ vcpus: 0, memoryMiB: 0 });
    for (const id of guests) {
      // One domain, running on the other host; the API agrees.
      expect(await domainsOf(id)).toEqual([h2]);
      expect(await domstate(h2, id)).toBe("running");
      expect(await vm(id)).toMatchObject({ state: "running", hostId: h2 });
    }
    const enabled = await t.api<Host>(`/v1/hosts/${h1}/enable`, { method: "POST", token: t.adminToken });
    expect(enabled.status, JSON.stringify(enabled.body)).toBe(200);
    expect(enabled.body.state).toBe("enabled");
    for (const id of guests) {
      const del = await t.api<{ operation: Operation }>(`/v1/vms/${id}`, { method: "DELETE", token });
      expect((await t.waitForOperation(del.body.operation.id, token)).status).toBe("succeeded");
    }
  }, 360_000);

  it("survives SIGKILL of the agent during a start: the operation ends once, one domain, capacity right", async () => {
    const before = (await Promise.all(bed.hosts.map((h) => host(h.id)))).reduce(
      (n, h) => n + h.allocated.memoryMiB,
      0,
    );
    const { vm: created, operation } = await create("crash-start");
    await waitForLog((l) => l.msg === "command accepted" && l.opId === operation.id);
    await t.stack.agent(SITE).kill("SIGKILL");
    await t.stack.agent(SITE).restart();
    const done = await t.waitForOperation(operation.id, token, 120_000);
    expect(done.status, JSON.stringify(done.error)).toBe("succeeded");
    expect(await domainsOf(created.id)).toHaveLength(1);
    expect(await domstate((await vm(created.id)).hostId!, created.id)).toBe("running");
    const after = (await Promise.all(bed.hosts.map((h) => host(h.id)))).reduce(
      (n, h) => n + h.allocated.memoryMiB,
      0,
    );
    expect(after - before).toBe(64);
    const ops = (await t.api<{ items: Operation[] }>(`/v1/operations?vmId=${created.id}`, { token })).body
      .items;
    expect(ops).toHaveLength(1);
    expectRanAfterCrash(operation.id);
  });

  it("survives SIGKILL of the agent during a migration: the operation ends once, one domain, capacity right", async () => {
    const { vm: created, operation } = await create("crash-move");
    await t.waitForOperation(operation.id, token);
    const source = (await vm(created.id)).hostId!;
    const target = bed.hosts.find((h) => h.id !== source)!.id;
    const total = async () =>
      (await Promise.all(bed.hosts.map((h) => host(h.id)))).reduce((n, h) => n + h.allocated.memoryMiB, 0);
    const before = await total();
    const op = await act(created.id, "migrate", { targetHostId: target }, t.adminToken);
    await waitForLog((l) => l.msg === "command accepted" && l.opId === op.id);
    await new Promise((r) => setTimeout(r, 300));
    await t.stack.agent(SITE).kill("SIGKILL");
    await t.stack.agent(SITE).restart();
    const done = await t.waitForOperation(op.id, token, 120_000);
    expect(done.status, JSON.stringify(done.error)).toBe("succeeded");
    const where = await domainsOf(created.id);
    expect(where).toHaveLength(1);
    expect(await vm(created.id)).toMatchObject({ state: "running", hostId: where[0] });
    expect(await domstate(where[0]!, created.id)).toBe("running");
    expect(await total()).toBe(before);
    expectRanAfterCrash(op.id);
  });

  it("refuses a host whose key does not match the pinned fingerprint, before authenticating", async () => {
    const [h1, h2] = bed.hosts;
    const cfg = JSON.parse(await readFile(join(t.dataDir, "agents", `${SITE}.json`), "utf8"));
    // Host 1 pinned to host 2's fingerprint: its real key does not match.
    cfg.hosts[0].ssh.hostKeyFingerprint = h2!.hostKeyFingerprint;
    const path = join(t.dataDir, "agents", "mismatch.json");
    await writeFile(path, JSON.stringify(cfg), { mode: 0o600 });
    const res = await new Promise<{ code: number | null; out: string }>((done) => {
      execFile(
        process.execPath,
        ["bridge-agent/main.ts", "--config", path, "--check"],
        { timeout: 60_000 },
        (err, stdout, stderr) =>
          done({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
      );
    });
    expect(res.code).toBe(1);
    expect(res.out).toContain(`FAIL ${h1!.id} (kvm): host_key_mismatch`);
    expect(res.out).toContain(h2!.hostKeyFingerprint);
    expect(res.out).toContain(`ok   ${h2!.id} (kvm)`);
  });

  it("reports a domain destroyed behind Usher's back and marks its VM in error (policy error)", async () => {
    const { vm: created, operation } = await create("drifter");
    await t.waitForOperation(operation.id, token);
    const hostId = (await vm(created.id)).hostId!;
    await bed.exec(hostId, ["virsh", "-c", "qemu:///system", "destroy", `usher-${created.id}`]);
    await bed.exec(hostId, ["virsh", "-c", "qemu:///system", "undefine", `usher-${created.id}`]);
    await waitForLog((l) => l.msg === "drift" && JSON.stringify(l.drifts ?? "").includes(created.id), 30_000);
    const now = await vm(created.id);
    expect(now.state).toBe("error");
    expect(now.hostId).toBe(hostId); // the claim stays until someone destroys or deletes the VM
    const del = await t.api<{ operation: Operation }>(`/v1/vms/${created.id}`, { method: "DELETE", token });
    expect((await t.waitForOperation(del.body.operation.id, token)).status).toBe("succeeded");
  });

  /** The agent was killed mid-operation: the command came back (second receive) and ran to its end once. */
  function expectRanAfterCrash(opId: string) {
    const accepted = t.logs.filter((l) => l.msg === "command accepted" && l.opId === opId);
    expect(accepted.map((l) => l.receiveCount)).toContain(2);
    expect(t.logs.filter((l) => l.msg === "command done" && l.opId === opId)).toHaveLength(1);
  }

  async function waitForLog(match: (l: Record<string, unknown>) => boolean, timeoutMs = 20_000) {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if (t.logs.some(match)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error("log line not seen in time");
  }
});
