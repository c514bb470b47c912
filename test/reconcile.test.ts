/**
 * Reconciliation and host liveness against real DynamoDB Local: drift between an agent's inventory and
 * the records is reported as events and handled by the policy (adopt, or mark error), never by forcing
 * a power state; a host that stops reporting goes down and comes back up when it reports again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DomainReport } from "../shared/contracts/messages.ts";
import { getClaim } from "../shared/services/capacity.ts";
import { finishOperation } from "../shared/services/finish.ts";
import { createHost, getHostItem } from "../shared/services/hosts.ts";
import { getOpItem } from "../shared/services/operations.ts";
import { reconcileHost } from "../shared/services/reconcile.ts";
import { handleReport } from "../shared/services/results.ts";
import { scheduleOperation } from "../shared/services/scheduling.ts";
import { sweep } from "../shared/services/sweep.ts";
import { createVm, getVmItem, requestAction } from "../shared/services/vms.ts";
import { signReport } from "../shared/signing/envelopes.ts";
import { queryAll } from "../shared/store/base.ts";
import { keys } from "../shared/store/keys.ts";
import { admin, type ServiceBed, startServiceBed } from "./support/services.ts";

let bed: ServiceBed;

beforeAll(async () => {
  bed = await startServiceBed();
  for (const id of ["r1", "r2"]) {
    await createHost(
      bed.deps(),
      { actor: "root", requestId: "req" },
      { id, site: "local", kind: "sim", address: `${id}.sim`, capacity: { vcpus: 8, memoryMiB: 8192 } },
    );
  }
});
afterAll(() => bed?.stop());

/** A VM created, placed by the scheduler, and recorded running (as if its agent had reported). */
async function runningVm(name: string) {
  const deps = bed.deps();
  const created = await createVm(
    deps,
    { principal: admin, requestId: `req-${name}` },
    { name, vcpus: 1, memoryMiB: 256 },
  );
  const { vm, operation } = created.body as { vm: { id: string }; operation: { id: string } };
  await scheduleOperation(deps, { opId: operation.id, requestId: "r" });
  await finishOperation(
    deps,
    (await getOpItem(deps, operation.id))!,
    await getVmItem(deps, vm.id),
    { ok: true, powerState: "running" },
    { dispatched: true },
  );
  return (await getVmItem(deps, vm.id))!;
}

/** A running VM with a pause queued behind it. */
async function runningVmWithWorkQueued(name: string) {
  const vm = await runningVm(name);
  await requestAction(bed.deps(), { principal: admin, requestId: "queued" }, vm.id, { action: "pause" });
  return (await getVmItem(bed.deps(), vm.id))!;
}

const domain = (vmId: string, powerState: DomainReport["powerState"]): DomainReport => ({
  uuid: `uuid-${vmId}`,
  vmId,
  name: `usher-${vmId}`,
  powerState,
  vcpus: 1,
  memoryMiB: 256,
});
const later = () => new Date(Date.now() + 60_000).toISOString();
const events = async (pk: string) =>
  (
    await queryAll<{ eventType: string; data: Record<string, unknown> }>(bed.deps().db, {
      KeyConditionExpression: "pk = :pk AND begins_with(sk, :ev)",
      ExpressionAttributeValues: { ":pk": pk, ":ev": "EV#" },
    })
  ).map((e) => e);

describe("drift", () => {
  it("leaves a VM with an operation in flight alone, whatever the inventory says", async () => {
    const vm = await runningVmWithWorkQueued("busy-1");
    expect(
      await reconcileHost(bed.deps(), { hostId: vm.hostId!, reachable: true, domains: [] }, later()),
    ).toEqual([]);
    expect((await getVmItem(bed.deps(), vm.id))?.state).toBe("running");
  });

  it("marks a VM whose domain vanished (error policy), and adopts a changed power state (adopt policy)", async () => {
    const deps = bed.deps();
    const vmA = await runningVm("drift-a");
    const vmB = await runningVm("drift-b");
    expect(vmA?.hostId).toBeTruthy();

    // Error policy: A's domain is gone from its host → drift.missing, VM error, claim kept.
    const onA = await reconcileHost(
      deps,
      {
        hostId: vmA!.hostId!,
        reachable: true,
        domains: vmB!.hostId === vmA!.hostId ? [domain(vmB!.id, "running")] : [],
      },
      later(),
    );
    expect(onA).toContainEqual(
      expect.objectContaining({ kind: "missing", vmId: vmA!.id, recorded: "running" }),
    );
    expect((await getVmItem(deps, vmA!.id))?.state).toBe("error");
    expect(await getClaim(deps, vmA!.hostId!, vmA!.id)).toBeTruthy();
    expect((await events(keys.vm(vmA!.id).pk)).map((e) => e.eventType)).toContain("drift.missing");

    // Adopt policy: B's domain is paused on the host → the record follows the host.
    const adopt = bed.deps({ driftPolicy: "adopt" });
    const onB = await reconcileHost(
      adopt,
      {
        hostId: vmB!.hostId!,
        reachable: true,
        domains: [domain(vmB!.id, "paused"), domain("vm-stranger", "running")],
      },
      later(),
    );
    expect(onB).toContainEqual(
      expect.objectContaining({
        kind: "state_mismatch",
        vmId: vmB!.id,
        recorded: "running",
        observed: "paused",
      }),
    );
    expect(onB).toContainEqual(expect.objectContaining({ kind: "unknown_domain", vmId: "vm-stranger" }));
    expect((await getVmItem(deps, vmB!.id))?.state).toBe("paused");
    expect((await events(keys.host(vmB!.hostId!).pk)).map((e) => e.eventType)).toContain(
      "drift.unknown_domain",
    );

    // Adopt policy, missing domain: the VM is destroyed in the record and its capacity released.
    const before = (await getHostItem(deps, vmB!.hostId!))!.freeVcpus;
    await reconcileHost(adopt, { hostId: vmB!.hostId!, reachable: true, domains: [] }, later());
    expect(await getVmItem(deps, vmB!.id)).toMatchObject({ state: "destroyed" });
    expect((await getVmItem(deps, vmB!.id))?.hostId).toBeUndefined();
    expect((await getHostItem(deps, vmB!.hostId!))!.freeVcpus).toBe(before + 1);

    // An unreachable host tells nothing: no drift.
    expect(
      await reconcileHost(deps, { hostId: vmA!.hostId!, reachable: false, domains: [] }, later()),
    ).toEqual([]);
  });
});

describe("host liveness", () => {
  it("marks a silent host down, and brings it back when its agent reports it reachable", async () => {
    const deps = bed.deps({ hostDownAfterSeconds: 30 });
    await createHost(
      deps,
      { actor: "root", requestId: "req" },
      {
        id: "quiet",
        site: "local",
        kind: "sim",
        address: "quiet.sim",
        capacity: { vcpus: 2, memoryMiB: 2048 },
        state: "draining",
      },
    );
    bed.clock.offsetMs = 10_000;
    await sweep(bed.deps({ hostDownAfterSeconds: 30 }));
    expect((await getHostItem(deps, "quiet"))?.state).toBe("draining");
    bed.clock.offsetMs = 40_000;
    const report = await sweep(bed.deps({ hostDownAfterSeconds: 30 }));
    expect(report.hostsDown).toBeGreaterThanOrEqual(1);
    expect(await getHostItem(deps, "quiet")).toMatchObject({ state: "down", stateBeforeDown: "draining" });
    bed.clock.offsetMs = 0;

    const inventory = {
      type: "inventory" as const,
      site: "local",
      agentId: "a1",
      at: new Date().toISOString(),
      hosts: ["quiet", "r1", "r2"].map((hostId) => ({ hostId, reachable: true, domains: [] })),
    };
    await handleReport(deps, await signReport(inventory, "local", bed.agentSigner));
    const back = await getHostItem(deps, "quiet");
    expect(back).toMatchObject({ state: "draining", lastHeartbeatAt: inventory.at });
    expect(back?.stateBeforeDown).toBeUndefined();
    expect((await events(keys.host("quiet").pk)).map((e) => e.eventType)).toEqual(
      expect.arrayContaining(["host.down", "host.up"]),
    );
  });

  it("ignores an inventory from another site's agent for this site's host", async () => {
    const inventory = {
      type: "inventory" as const,
      site: "local",
      agentId: "a1",
      at: new Date().toISOString(),
      hosts: [{ hostId: "nowhere", reachable: true, domains: [] }],
    };
    await handleReport(bed.deps(), await signReport(inventory, "local", bed.agentSigner));
    expect(await getHostItem(bed.deps(), "nowhere")).toBeUndefined();
  });
});

describe("inventory in parts", () => {
  it("records each part on its own, in any order, and drifts nothing where the host agrees", async () => {
    const deps = bed.deps();
    const vm = await runningVm("parts-1");
    await createHost(
      deps,
      { actor: "root", requestId: "req" },
      {
        id: "elsewhere-1",
        site: "east",
        kind: "sim",
        address: "e1.sim",
        capacity: { vcpus: 2, memoryMiB: 2048 },
      },
    );
    const at = later();
    const base = { type: "inventory" as const, site: "local", agentId: "a1", at };
    const onVmHost = { hostId: vm.hostId!, reachable: true, domains: [domain(vm.id, "running")] };
    const others = ["r1", "r2"]
      .filter((id) => id !== vm.hostId)
      .map((hostId) => ({ hostId, reachable: true, domains: [] }));
    // The last part first: nothing ties the parts of one inventory together but their `at`.
    const parts = [
      {
        ...base,
        part: 2,
        last: true,
        hosts: [...others, { hostId: "elsewhere-1", reachable: true, domains: [] }],
      },
      { ...base, part: 1, hosts: [onVmHost] },
    ];
    for (const part of parts) await handleReport(deps, await signReport(part, "local", bed.agentSigner));
    for (const id of ["r1", "r2"])
      expect(await getHostItem(deps, id)).toMatchObject({ lastHeartbeatAt: at, inventory: { at } });
    expect((await getHostItem(deps, vm.hostId!))?.inventory?.domains).toBe(1);
    expect((await getVmItem(deps, vm.id))?.state).toBe("running");
    // A host of another site named in this site's inventory is left as it was.
    const foreign = await getHostItem(deps, "elsewhere-1");
    expect(foreign?.lastHeartbeatAt).toBeUndefined();
    expect(foreign?.inventory).toBeUndefined();
  });
});

describe("failed migrations", () => {
  async function migrating(name: string) {
    const deps = bed.deps();
    const vm = await runningVm(name);
    const mig = (
      await requestAction(deps, { principal: admin, requestId: "m" }, vm.id, { action: "migrate" })
    ).body as { operation: { id: string } };
    await scheduleOperation(deps, { opId: mig.operation.id, requestId: "m" });
    const placed = (await getVmItem(deps, vm.id))!;
    expect(placed.migrationHostId).toBeTruthy();
    return { vmId: vm.id, opId: mig.operation.id, source: placed.hostId!, target: placed.migrationHostId! };
  }

  it("keeps both claims when the domain is gone from the source (it may run on the target)", async () => {
    const deps = bed.deps();
    const m = await migrating("mig-gone");
    const error = { code: "migration_failed", message: "lost track" };
    await finishOperation(
      deps,
      (await getOpItem(deps, m.opId))!,
      await getVmItem(deps, m.vmId),
      { ok: false, error, powerState: "absent" },
      { dispatched: true },
    );
    expect(await getVmItem(deps, m.vmId)).toMatchObject({
      state: "error",
      hostId: m.source,
      migrationHostId: m.target,
    });
    expect(await getClaim(deps, m.source, m.vmId)).toBeTruthy();
    expect(await getClaim(deps, m.target, m.vmId)).toBeTruthy();
  });

  it("releases the target claim when the domain is still running on the source", async () => {
    const deps = bed.deps();
    const m = await migrating("mig-stayed");
    const error = { code: "migration_failed", message: "refused by target" };
    await finishOperation(
      deps,
      (await getOpItem(deps, m.opId))!,
      await getVmItem(deps, m.vmId),
      { ok: false, error, powerState: "running" },
      { dispatched: true },
    );
    const vm = await getVmItem(deps, m.vmId);
    expect(vm).toMatchObject({ state: "running", hostId: m.source });
    expect(vm?.migrationHostId).toBeUndefined();
    expect(await getClaim(deps, m.target, m.vmId)).toBeUndefined();
    expect(await getClaim(deps, m.source, m.vmId)).toBeTruthy();
  });
});

describe("inventory timing", () => {
  it("leaves a VM changed just before the inventory was taken to the next inventory", async () => {
    const deps = bed.deps();
    const placed = await runningVm("fresh-1");
    // An inventory stamped 2 s after the VM started: within the margin, so not (yet) drift.
    const at = new Date(Date.parse(placed.updatedAt) + 2_000).toISOString();
    expect(await reconcileHost(deps, { hostId: placed.hostId!, reachable: true, domains: [] }, at)).toEqual(
      [],
    );
    expect((await getVmItem(deps, placed.id))?.state).toBe("running");
  });
});
