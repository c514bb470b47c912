/**
 * Evacuating a failed host, against real DynamoDB Local and fauxqs: only a down host, fenced first
 * through a signed task to its site's agent, nothing restarted before the fence is reported (and, by
 * default, confirmed by an admin), a failed or missing fence changes nothing, and afterwards every
 * claim on the host is released exactly once and each VM meant to run is restarted once, elsewhere.
 */
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentTask, TaskResult } from "../shared/contracts/messages.ts";
import { ipManager } from "../shared/plugins/builtin/ipam.ts";
import { getClaim } from "../shared/services/capacity.ts";
import type { Deps } from "../shared/services/context.ts";
import { confirmEvacuation, evacuateHost } from "../shared/services/evacuate.ts";
import { getHostItem } from "../shared/services/hosts.ts";
import { enableHost, getHostDetail } from "../shared/services/maintenance.ts";
import { getOpItem } from "../shared/services/operations.ts";
import { handleReport } from "../shared/services/results.ts";
import { scheduleOperation } from "../shared/services/scheduling.ts";
import { sweep } from "../shared/services/sweep.ts";
import { createVm, getVmItem } from "../shared/services/vms.ts";
import { signReport } from "../shared/signing/envelopes.ts";
import { keys } from "../shared/store/keys.ts";
import { act, addHost, complete, eventTypes, opsOf, runningVm } from "./support/maintenance.ts";
import { admin, type ServiceBed, startServiceBed } from "./support/services.ts";

let bed: ServiceBed;
const ctx = { principal: admin, requestId: "req-evac" };

beforeAll(async () => {
  bed = await startServiceBed(["local", "e", "a", "t", "u", "b", "r"]);
});
afterAll(() => bed?.stop());

/** The tasks of a kind waiting on a site's agent queue. */
async function tasksOf(site: string, kind: AgentTask["kind"]): Promise<AgentTask[]> {
  const bodies = await bed.receive(bed.resources.queueUrls.agents[site]!);
  return bodies.map((b) => decodeJwt(b).task as AgentTask).filter((t) => t?.kind === kind);
}
const fenceTasks = (site: string) => tasksOf(site, "fence");

/** An inventory of `hostId` from its site's agent, through the results consumer's entry point. */
async function inventory(deps: Deps, site: string, hostId: string, running: string[]) {
  const inv = {
    type: "inventory" as const,
    site,
    agentId: "a1",
    at: deps.now().toISOString(),
    hosts: [
      {
        hostId,
        reachable: true,
        domains: running.map((vmId) => ({
          uuid: `uuid-${vmId}`,
          vmId,
          name: vmId,
          powerState: "running" as const,
          vcpus: 1,
          memoryMiB: 256,
        })),
      },
    ],
  };
  await handleReport(deps, await signReport(inv, site, bed.agentSigner));
}

/** The agent's report on a fence task, through the results consumer's entry point. */
async function report(
  deps: Deps,
  task: Pick<AgentTask, "taskId" | "site" | "hostId">,
  ok: boolean,
  verified = true,
) {
  const r: TaskResult = {
    type: "task_result",
    taskId: task.taskId,
    site: task.site,
    kind: "fence",
    hostId: task.hostId,
    ok,
    ...(ok
      ? { data: { fenced: true, method: "test", verified } }
      : { error: { code: "fence_failed", message: "BMC said no" } }),
    at: new Date().toISOString(),
  };
  await handleReport(deps, await signReport(r, task.site, bed.agentSigner));
}

/** Marks `hostId` down the way the sweep does (its agent silent), keeping `alive` reported. */
async function goDown(hostId: string, alive: string[], site: string) {
  bed.clock.offsetMs += 60_000;
  const deps = bed.deps({ hostDownAfterSeconds: 30 });
  const inventory = {
    type: "inventory" as const,
    site,
    agentId: "a1",
    at: deps.now().toISOString(),
    hosts: alive.map((id) => ({ hostId: id, reachable: true, domains: [] })),
  };
  await handleReport(deps, await signReport(inventory, site, bed.agentSigner));
  await sweep(deps);
  expect((await getHostItem(deps, hostId))?.state).toBe("down");
}

describe("evacuate", () => {
  it("fences first, restarts nothing before the fence is reported and confirmed, then moves every VM once", async () => {
    const deps = bed.deps();
    await addHost(deps, "e", "e1");
    await addHost(deps, "e", "e2", "disabled");
    const idle = await runningVm(deps, "e", "ev-idle");
    const busy = await runningVm(deps, "e", "ev-busy");
    const stopped = await runningVm(deps, "e", "ev-stopped");
    const moving = await runningVm(deps, "e", "ev-moving");
    await complete(deps, await act(deps, stopped.id, "shutdown"), { ok: true, powerState: "stopped" });
    await enableHost(deps, ctx, "e2");
    // busy: a reboot dispatched to e1 when it failed; moving: a migration e1 → e2 dispatched.
    const reboot = await act(deps, busy.id, "reboot");
    await scheduleOperation(deps, { opId: reboot, requestId: "r" });
    const migrate = await act(deps, moving.id, "migrate");
    await scheduleOperation(deps, { opId: migrate, requestId: "r" });
    expect(await getVmItem(deps, moving.id)).toMatchObject({ hostId: "e1", migrationHostId: "e2" });

    await expect(evacuateHost(deps, ctx, "e1")).rejects.toMatchObject({ code: "invalid_state" });
    await goDown("e1", ["e2"], "e");

    await evacuateHost(bed.deps(), ctx, "e1");
    let [task] = await fenceTasks("e");
    expect(task).toMatchObject({ kind: "fence", hostId: "e1", site: "e" });
    expect(await getHostItem(deps, "e1")).toMatchObject({ state: "fencing" });
    const untouched = async () => {
      for (const vm of [idle, busy, stopped, moving]) {
        expect((await getVmItem(deps, vm.id))?.hostId).toBe("e1");
        expect(await getClaim(deps, "e1", vm.id)).toBeTruthy();
      }
      expect((await opsOf(deps, idle.id)).filter((o) => o.action === "start")).toHaveLength(1);
    };
    await sweep(bed.deps());
    await untouched();
    await expect(confirmEvacuation(bed.deps(), ctx, "e1")).rejects.toMatchObject({ code: "invalid_state" });

    // A report for another task is ignored; a failed fence leaves everything as it was.
    await report(bed.deps(), { ...task!, taskId: "task-stale" }, true);
    expect((await getHostItem(deps, "e1"))?.state).toBe("fencing");
    await report(bed.deps(), task!, false);
    let detail = await getHostDetail(bed.deps(), "e1");
    expect(detail).toMatchObject({
      state: "down",
      evacuation: { status: "fence_failed", error: { code: "fence_failed" }, remaining: 4 },
    });
    await untouched();

    // Again: fenced this time, but (agent+admin) still nothing moves until an admin confirms.
    await evacuateHost(bed.deps(), ctx, "e1");
    [task] = await fenceTasks("e");
    await report(bed.deps(), task!, true);
    detail = await getHostDetail(bed.deps(), "e1");
    expect(detail).toMatchObject({ state: "fenced", evacuation: { status: "awaiting_confirmation" } });
    await sweep(bed.deps());
    await untouched();

    // Confirmed, with two sweeps racing the confirmation's own pass: each claim goes once.
    const e2Before = (await getHostItem(deps, "e2"))!;
    await Promise.all([confirmEvacuation(bed.deps(), ctx, "e1"), sweep(bed.deps()), sweep(bed.deps())]);
    await sweep(bed.deps());
    detail = await getHostDetail(bed.deps(), "e1");
    expect(detail).toMatchObject({ state: "fenced", evacuation: { status: "done", remaining: 0 } });
    expect(detail.evacuation?.vms).toHaveLength(4);
    const e1 = (await getHostItem(deps, "e1"))!;
    expect([e1.freeVcpus, e1.freeMemoryMiB]).toEqual([e1.limitVcpus, e1.limitMemoryMiB]);

    const starts = async (vmId: string) =>
      (await opsOf(deps, vmId)).filter((o) => o.action === "start").slice(1); // after the first start
    // idle: released and restarted once.
    expect(await starts(idle.id)).toHaveLength(1);
    // busy: its reboot failed host_fenced, then one restart.
    expect(await getOpItem(deps, reboot)).toMatchObject({ status: "failed", error: { code: "host_fenced" } });
    expect(await starts(busy.id)).toHaveLength(1);
    // stopped: released, not restarted.
    expect(await getVmItem(deps, stopped.id)).toMatchObject({ state: "stopped" });
    expect((await getVmItem(deps, stopped.id))?.hostId).toBeUndefined();
    expect(await starts(stopped.id)).toEqual([]);
    // moving: migration failed, re-homed on its target (whose claim it keeps) and started there.
    expect(await getOpItem(deps, migrate)).toMatchObject({
      status: "failed",
      error: { code: "host_fenced" },
    });
    expect(await getVmItem(deps, moving.id)).toMatchObject({ hostId: "e2" });
    expect(await getClaim(deps, "e2", moving.id)).toBeTruthy();
    expect((await getHostItem(deps, "e2"))!.freeMemoryMiB).toBe(e2Before.freeMemoryMiB);

    // The restarts run elsewhere: on e2.
    for (const vm of [idle, busy, moving]) {
      const [start] = await starts(vm.id);
      await complete(bed.deps(), start!.id, { ok: true, powerState: "running" });
      expect(await getVmItem(deps, vm.id)).toMatchObject({ state: "running", hostId: "e2" });
    }
    expect(await eventTypes(deps, keys.host("e1").pk)).toEqual(
      expect.arrayContaining([
        "host.fencing",
        "host.fence_failed",
        "host.fenced",
        "host.evacuation_confirmed",
        "host.evacuated",
      ]),
    );
    expect(await eventTypes(deps, keys.vm(busy.id).pk)).toEqual(
      expect.arrayContaining(["op.failed", "vm.evacuated"]),
    );

    // It stays out of placement until an admin enables it.
    expect((await runningVm(bed.deps(), "e", "ev-after")).hostId).toBe("e2");
    expect(await enableHost(bed.deps(), ctx, "e1")).toMatchObject({ state: "enabled", evacuation: null });
  });

  it("with USHER_EVACUATE_CONFIRM=agent, restarts as soon as the agent reports the host fenced", async () => {
    const agentMode = (): Deps => ({
      ...bed.deps(),
      config: { ...bed.deps().config, evacuateConfirm: "agent" },
    });
    await addHost(agentMode(), "a", "a1");
    const vm = await runningVm(agentMode(), "a", "ag-1");
    await addHost(agentMode(), "a", "a2");
    await goDown("a1", ["a2"], "a");
    await evacuateHost(agentMode(), ctx, "a1");
    const [task] = await fenceTasks("a");
    expect((await opsOf(agentMode(), vm.id)).filter((o) => o.action === "start")).toHaveLength(1);
    await report(agentMode(), task!, true);
    expect(await getHostDetail(agentMode(), "a1")).toMatchObject({
      state: "fenced",
      evacuation: { status: "done", remaining: 0, vms: [expect.objectContaining({ vmId: vm.id })] },
    });
    const restart = (await opsOf(agentMode(), vm.id)).filter((o) => o.action === "start")[1];
    await complete(agentMode(), restart!.id, { ok: true, powerState: "running" });
    expect(await getVmItem(agentMode(), vm.id)).toMatchObject({ state: "running", hostId: "a2" });
  });

  it("with USHER_EVACUATE_CONFIRM=agent, an unverified fence still waits for an admin", async () => {
    const agentMode = (): Deps => ({
      ...bed.deps(),
      config: { ...bed.deps().config, evacuateConfirm: "agent" },
    });
    await addHost(agentMode(), "u", "u1");
    const vm = await runningVm(agentMode(), "u", "uv-1");
    await addHost(agentMode(), "u", "u2");
    await goDown("u1", ["u2"], "u");
    await evacuateHost(agentMode(), ctx, "u1");
    const [task] = await fenceTasks("u");
    await report(agentMode(), task!, true, false);
    expect(await getHostDetail(agentMode(), "u1")).toMatchObject({
      state: "fenced",
      evacuation: { status: "awaiting_confirmation", remaining: 1 },
    });
    expect((await opsOf(agentMode(), vm.id)).filter((o) => o.action === "start")).toHaveLength(1);
    await confirmEvacuation(agentMode(), ctx, "u1");
    expect((await opsOf(agentMode(), vm.id)).filter((o) => o.action === "start")).toHaveLength(2);
  });

  it("a fenced host showing running guests: the fence fails before restarts; after them, restarts stop and strays are purged", async () => {
    const deps = bed.deps();
    await addHost(deps, "b", "b1");
    await addHost(deps, "b", "b2", "disabled");
    const one = await runningVm(deps, "b", "br-1");
    const two = await runningVm(deps, "b", "br-2");
    await enableHost(deps, ctx, "b2");
    await goDown("b1", ["b2"], "b");
    await evacuateHost(bed.deps(), ctx, "b1");
    let [task] = await fenceTasks("b");
    await report(bed.deps(), task!, true);
    expect((await getHostItem(deps, "b1"))?.state).toBe("fenced");

    // A fenced host takes no commands: an action on its VM fails at once, nothing is sent.
    const reboot = await act(bed.deps(), two.id, "reboot");
    await scheduleOperation(bed.deps(), { opId: reboot, requestId: "r" });
    expect(await getOpItem(deps, reboot)).toMatchObject({
      status: "failed",
      error: { code: "host_unavailable" },
    });

    // A report read before the fence (within the margin) says nothing.
    await inventory(bed.deps(), "b", "b1", [one.id]);
    expect(await getHostDetail(bed.deps(), "b1")).toMatchObject({
      evacuation: { status: "awaiting_confirmation" },
    });
    // Later, a guest still running: the fence did not hold. Nothing restarts; the host is down again.
    bed.clock.offsetMs += 20_000;
    await inventory(bed.deps(), "b", "b1", [one.id]);
    expect(await getHostDetail(bed.deps(), "b1")).toMatchObject({
      state: "down",
      evacuation: { status: "fence_failed", error: { code: "fence_contradicted" }, remaining: 2 },
    });
    await expect(confirmEvacuation(bed.deps(), ctx, "b1")).rejects.toMatchObject({ code: "invalid_state" });
    expect((await opsOf(deps, one.id)).filter((o) => o.action === "start")).toHaveLength(1);

    // Fenced again, confirmed, restarted on b2 ...
    await evacuateHost(bed.deps(), ctx, "b1");
    [task] = await fenceTasks("b");
    await report(bed.deps(), task!, true);
    await confirmEvacuation(bed.deps(), ctx, "b1");
    expect(await getHostDetail(bed.deps(), "b1")).toMatchObject({ evacuation: { status: "done" } });
    const restart = (await opsOf(deps, one.id)).filter((o) => o.action === "start")[1];
    await complete(bed.deps(), restart!.id, { ok: true, powerState: "running" });
    expect(await getVmItem(deps, one.id)).toMatchObject({ state: "running", hostId: "b2" });

    // ... and then b1 shows br-1 running: that copy is the stray one, purged by the agent.
    bed.clock.offsetMs += 20_000;
    await inventory(bed.deps(), "b", "b1", [one.id]);
    expect(await getHostDetail(bed.deps(), "b1")).toMatchObject({
      state: "fenced",
      evacuation: { status: "fence_breached", error: { code: "fence_contradicted" } },
    });
    const purges = await tasksOf("b", "purge");
    expect(purges).toEqual([expect.objectContaining({ hostId: "b1", payload: { vmId: one.id } })]);
    const purged: TaskResult = {
      type: "task_result",
      taskId: purges[0]!.taskId,
      site: "b",
      kind: "purge",
      hostId: "b1",
      ok: true,
      data: { vmId: one.id, purged: true, powerState: "absent" },
      at: new Date().toISOString(),
    };
    await handleReport(bed.deps(), await signReport(purged, "b", bed.agentSigner));
    expect(await eventTypes(deps, keys.vm(one.id).pk)).toContain("vm.stray_purged");
    expect(await eventTypes(deps, keys.host("b1").pk)).toEqual(
      expect.arrayContaining(["host.fence_failed", "host.fence_breached"]),
    );
    // The VM running on b2 is untouched.
    expect(await getVmItem(deps, one.id)).toMatchObject({ state: "running", hostId: "b2" });
  });

  it("restarts a VM with what its placing start asked: an address range open only to the owner's role", async () => {
    const withIpam = (): Deps => {
      const base = bed.deps({
        config: {
          plugins: [ipManager({ ranges: [{ name: "ops-net", cidr: "10.9.0.0/28", roles: ["operator"] }] })],
        },
      });
      return { ...base, config: { ...base.config, evacuateConfirm: "agent" } };
    };
    const owner = { subject: "olga", project: "ops-team", roles: ["operator" as const] };
    await addHost(withIpam(), "r", "r1");
    const res = await createVm(
      withIpam(),
      { principal: owner, requestId: "req-olga" },
      { name: "ro-1", site: "r", vcpus: 1, memoryMiB: 256 },
    );
    const { vm, operation } = res.body as { vm: { id: string }; operation: { id: string } };
    await complete(withIpam(), operation.id, { ok: true, powerState: "running" });
    const before = (await getVmItem(withIpam(), vm.id))!;
    expect(before.network?.range).toBe("ops-net");
    await addHost(withIpam(), "r", "r2");
    await goDown("r1", ["r2"], "r");
    await evacuateHost(withIpam(), ctx, "r1");
    const [task] = await fenceTasks("r");
    await report(withIpam(), task!, true);
    const restart = (await opsOf(withIpam(), vm.id)).filter((o) => o.action === "start")[1];
    expect((await getOpItem(withIpam(), restart!.id))?.args).toMatchObject({ ipamRoles: ["operator"] });
    await complete(withIpam(), restart!.id, { ok: true, powerState: "running" });
    const after = (await getVmItem(withIpam(), vm.id))!;
    expect(after).toMatchObject({ state: "running", hostId: "r2", network: { range: "ops-net" } });
  });

  it("fails a fence the agent never reports, after its deadline, changing nothing", async () => {
    const deps = bed.deps();
    await addHost(deps, "t", "t1");
    const vm = await runningVm(deps, "t", "to-1");
    await addHost(deps, "t", "t2");
    await goDown("t1", ["t2"], "t");
    await evacuateHost(bed.deps(), ctx, "t1");
    await sweep(bed.deps());
    expect((await getHostItem(deps, "t1"))?.state).toBe("fencing");
    bed.clock.offsetMs += (deps.config.fenceTimeoutSeconds + deps.config.deadlineGraceSeconds + 1) * 1000;
    const swept = await sweep(bed.deps());
    expect(swept.maintenance.fenceTimeouts).toBe(1);
    expect(await getHostDetail(bed.deps(), "t1")).toMatchObject({
      state: "down",
      evacuation: { status: "fence_failed", error: { code: "fence_timeout" }, remaining: 1 },
    });
    expect(await getVmItem(deps, vm.id)).toMatchObject({ hostId: "t1", state: "running" });
  });
});
