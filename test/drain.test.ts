/**
 * Draining a host, against real DynamoDB Local and fauxqs, with the agent's reports recorded as the
 * results consumer would: the host takes no new placements, its running VMs get live migrations
 * through ordinary operations, failures stay visible until drained again, stopped VMs block, and the
 * sweep marks the host drained once no claim is left.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getClaim } from "../shared/services/capacity.ts";
import { drainHost } from "../shared/services/drain.ts";
import { getHostItem, patchHost } from "../shared/services/hosts.ts";
import { enableHost, getHostDetail } from "../shared/services/maintenance.ts";
import { getOpItem } from "../shared/services/operations.ts";
import { scheduleOperation } from "../shared/services/scheduling.ts";
import { sweep } from "../shared/services/sweep.ts";
import { getVmItem } from "../shared/services/vms.ts";
import { keys } from "../shared/store/keys.ts";
import { act, addHost, complete, eventTypes, opsOf, runningVm } from "./support/maintenance.ts";
import { admin, type ServiceBed, startServiceBed } from "./support/services.ts";

let bed: ServiceBed;
const ctx = { principal: admin, requestId: "req-drain" };

beforeAll(async () => {
  bed = await startServiceBed(["local", "d", "x", "m"]);
});
afterAll(() => bed?.stop());

describe("drain", () => {
  it("migrates running VMs away, keeps failures visible, and ends drained once no claim is left", async () => {
    const deps = bed.deps();
    await addHost(deps, "d", "d1");
    await addHost(deps, "d", "d2", "disabled");
    const [a, b, c] = [
      await runningVm(deps, "d", "dr-a"),
      await runningVm(deps, "d", "dr-b"),
      await runningVm(deps, "d", "dr-c"),
    ];
    expect([a.hostId, b.hostId, c.hostId]).toEqual(["d1", "d1", "d1"]);
    await complete(deps, await act(deps, c.id, "shutdown"), { ok: true, powerState: "stopped" });
    await patchHost(deps, "root", "req", "d2", { state: "enabled" });

    await drainHost(deps, ctx, "d1");
    expect((await getHostItem(deps, "d1"))?.state).toBe("draining");
    const migrations = async (vmId: string) =>
      (await opsOf(deps, vmId)).filter((o) => o.action === "migrate");
    const [migA] = await migrations(a.id);
    const [migB] = await migrations(b.id);
    expect(await migrations(c.id)).toEqual([]);
    expect(await getOpItem(deps, migA!.id)).toMatchObject({
      status: "queued",
      args: { live: true },
      requester: "root",
      project: a.project,
      requestId: "req-drain",
    });
    let detail = await getHostDetail(deps, "d1");
    expect(detail.drain).toMatchObject({ remaining: 3, failures: 1 });
    expect(detail.drain?.vms).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ vmId: a.id, status: "migrating", opId: migA!.id }),
        expect.objectContaining({
          vmId: c.id,
          status: "blocked",
          error: expect.objectContaining({ code: "not_running" }),
        }),
      ]),
    );

    // No new placements on a draining host.
    const fresh = await runningVm(deps, "d", "dr-new");
    expect(fresh.hostId).toBe("d2");

    // A's migration succeeds; B's fails with the guest still running on the source.
    await scheduleAndFinish(migA!.id, "d2");
    await complete(deps, migB!.id, {
      ok: false,
      error: { code: "migration_failed", message: "refused by target" },
      powerState: "running",
    });
    expect(await getVmItem(deps, a.id)).toMatchObject({ hostId: "d2", state: "running" });
    expect(await getClaim(deps, "d1", a.id)).toBeUndefined();

    // The sweep does not retry the failure by itself; the host stays draining with it visible.
    await sweep(deps);
    expect(await migrations(b.id)).toHaveLength(1);
    detail = await getHostDetail(deps, "d1");
    expect(detail.state).toBe("draining");
    expect(detail.drain?.vms).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          vmId: b.id,
          status: "failed",
          error: expect.objectContaining({ code: "migration_failed" }),
        }),
      ]),
    );

    // Draining again retries it; the stopped VM still blocks until it is deleted.
    await drainHost(deps, ctx, "d1");
    const again = await migrations(b.id);
    expect(again).toHaveLength(2);
    await scheduleAndFinish(again[1]!.id, "d2");
    await sweep(deps);
    expect((await getHostItem(deps, "d1"))?.state).toBe("draining");
    await complete(deps, await act(deps, c.id, "delete"), { ok: true, powerState: "absent" });

    const report = await sweep(deps);
    expect(report.maintenance.drained).toBe(1);
    const host = await getHostItem(deps, "d1");
    expect(host).toMatchObject({
      state: "drained",
      freeVcpus: host!.limitVcpus,
      freeMemoryMiB: host!.limitMemoryMiB,
    });
    detail = await getHostDetail(deps, "d1");
    expect(detail.drain).toMatchObject({ remaining: 0, failures: 0, vms: [] });
    expect(detail.drain?.finishedAt).toEqual(expect.any(String));
    expect(await eventTypes(deps, keys.host("d1").pk)).toEqual(
      expect.arrayContaining(["host.draining", "host.drained"]),
    );

    // Enabling undoes it: the host takes placements again.
    const enabled = await enableHost(deps, ctx, "d1");
    expect(enabled).toMatchObject({ state: "enabled", drain: null });
  });

  it("marks a host with nothing on it drained at once, and refuses to drain a down host", async () => {
    const deps = bed.deps();
    await addHost(deps, "x", "x1");
    await drainHost(deps, ctx, "x1");
    expect((await getHostItem(deps, "x1"))?.state).toBe("drained");
    await addHost(deps, "x", "x2", "down");
    await expect(drainHost(deps, ctx, "x2")).rejects.toMatchObject({ code: "invalid_state" });
    await expect(drainHost(deps, ctx, "nowhere")).rejects.toMatchObject({ code: "not_found" });
  });

  it("never moves a VM twice: one already leaving is left to its migration, a moved one is not moved again", async () => {
    const deps = bed.deps();
    await addHost(deps, "m", "m1");
    await addHost(deps, "m", "m2", "disabled");
    const leaving = await runningVm(deps, "m", "mv-leaving");
    const queued = await runningVm(deps, "m", "mv-queued");
    await patchHost(deps, "root", "req", "m2", { state: "enabled" });
    // leaving: an admin's migration already placed (target claim on m2); queued: one not yet scheduled.
    const own = await act(deps, leaving.id, "migrate");
    await scheduleOperation(deps, { opId: own, requestId: "r" });
    expect(await getVmItem(deps, leaving.id)).toMatchObject({ hostId: "m1", migrationHostId: "m2" });
    const mine = await act(deps, queued.id, "migrate");

    await drainHost(deps, ctx, "m1");
    const migrations = async (vmId: string) =>
      (await opsOf(deps, vmId)).filter((o) => o.action === "migrate");
    expect((await migrations(leaving.id)).map((o) => o.id)).toEqual([own]);
    const detail = await getHostDetail(deps, "m1");
    expect(detail.drain?.vms).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ vmId: leaving.id, status: "migrating", opId: null }),
      ]),
    );
    // queued gets the drain's migration behind its own; its own runs first and moves it.
    const [, drains] = await migrations(queued.id);
    expect(drains).toBeDefined();
    await scheduleAndFinish(own, "m2");
    await scheduleAndFinish(mine, "m2");
    expect(await getVmItem(deps, queued.id)).toMatchObject({ hostId: "m2", state: "running" });
    // The drain's migration, in its turn, finds the VM gone from m1: refused, nothing moves.
    await scheduleOperation(deps, { opId: drains!.id, requestId: "r" });
    expect(await getOpItem(deps, drains!.id)).toMatchObject({
      status: "failed",
      error: { code: "invalid_state", message: expect.stringContaining("left host m1") },
    });
    expect(await getVmItem(deps, queued.id)).toMatchObject({ hostId: "m2", state: "running" });
    expect(await getVmItem(deps, queued.id)).not.toHaveProperty("migrationHostId");
    await sweep(deps);
    expect((await getHostItem(deps, "m1"))?.state).toBe("drained");
  });

  async function scheduleAndFinish(opId: string, target: string) {
    await complete(bed.deps(), opId, { ok: true, powerState: "running", finalHostId: target });
  }
});
