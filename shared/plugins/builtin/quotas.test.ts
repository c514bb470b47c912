/**
 * Quotas against real DynamoDB Local, through the real scheduler and finisher: usage moves with the
 * capacity claim and its release (not with a migration), a claim beyond a limit fails with
 * `quota_exceeded` and claims nothing, a VM that could never fit is vetoed at once, and a gang's batch
 * is charged as one update per project.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { admin, type ServiceBed, startServiceBed } from "../../../test/support/services.ts";
import { actOn, startVm } from "../../../test/support/vm-flows.ts";
import type { Principal } from "../../auth/principal.ts";
import { createHost, getHostItem } from "../../services/hosts.ts";
import { getQuota } from "../../services/quotas.ts";
import { createVm } from "../../services/vms.ts";
import { transact } from "../../store/base.ts";
import type { OpItem, VmItem } from "../../store/items.ts";
import type { PluginContext } from "../types.ts";
import { type QuotaOptions, quotas, quotaUsage } from "./quotas.ts";

let bed: ServiceBed;

beforeAll(async () => {
  bed = await startServiceBed();
  for (const id of ["q-h1", "q-h2"]) {
    await createHost(
      bed.deps(),
      { actor: "root", requestId: "req" },
      { id, site: "local", kind: "sim", address: `${id}.sim`, capacity: { vcpus: 64, memoryMiB: 65_536 } },
    );
  }
}, 60_000);
afterAll(() => bed?.stop());

const user = (project: string): Principal => ({ subject: `u-${project}`, project, roles: ["user"] });
const depsWith = (o: QuotaOptions) => bed.deps({ config: { plugins: [quotas(o)] } });
const usage = (project: string) => quotaUsage(bed.deps(), project);
const freeVcpus = async () =>
  (await Promise.all(["q-h1", "q-h2"].map((h) => getHostItem(bed.deps(), h)))).map((h) => h?.freeVcpus);

describe("quotas options", () => {
  it("refuses limits that are not whole numbers, and unknown ones", () => {
    expect(() => quotas({ default: { vms: -1 } })).toThrow(/vms must be a whole number/);
    expect(() => quotas({ projects: { a: { vcpus: 1.5 } } })).toThrow(/project a: vcpus/);
    expect(() => quotas({ default: { disks: 3 } as never })).toThrow(/unknown limit disks/);
  });

  it("takes a project's own limits over the default, per dimension; null lifts one", async () => {
    const deps = depsWith({ default: { vms: 2, vcpus: 8 }, projects: { big: { vms: 10, vcpus: null } } });
    expect(await getQuota(deps, user("small"))).toEqual({
      project: "small",
      limits: { vms: 2, vcpus: 8, memoryMiB: null },
      used: { vms: 0, vcpus: 0, memoryMiB: 0 },
    });
    expect((await getQuota(deps, admin, "big")).limits).toEqual({ vms: 10, vcpus: null, memoryMiB: null });
    await expect(getQuota(deps, user("small"), "big")).rejects.toMatchObject({ code: "forbidden" });
    await expect(getQuota(bed.deps(), user("small"))).rejects.toMatchObject({ code: "not_found" });
  });
});

describe("usage follows claims", () => {
  it("charges a placed VM, fails the start beyond the VM limit, and frees the usage on destroy and delete", async () => {
    const deps = depsWith({ default: { vms: 2 } });
    const p = user("count");
    const a = await startVm(deps, p, { name: "a", vcpus: 2, memoryMiB: 512 });
    const b = await startVm(deps, p, { name: "b", vcpus: 1, memoryMiB: 256 });
    expect([a.op.status, b.op.status]).toEqual(["succeeded", "succeeded"]);
    expect(await usage("count")).toEqual({ vms: 2, vcpus: 3, memoryMiB: 768 });
    expect((a.vm as VmItem & { quotaCharge?: unknown }).quotaCharge).toEqual({
      vms: 1,
      vcpus: 2,
      memoryMiB: 512,
    });

    const before = await freeVcpus();
    const c = await startVm(deps, p, { name: "c" });
    expect(c.op.status).toBe("failed");
    expect(c.op.error).toMatchObject({
      code: "quota_exceeded",
      message: "project count would exceed its quota of 2 VMs: 2 in use, 1 more asked",
      details: { dimension: "vms", limit: 2, used: 2, requested: 1 },
    });
    expect(c.vm?.hostId).toBeUndefined();
    expect(await freeVcpus()).toEqual(before);
    expect(await usage("count")).toEqual({ vms: 2, vcpus: 3, memoryMiB: 768 });

    // A stopped VM keeps its host and its charge; a destroyed one gives both back.
    await actOn(deps, p, a.vm!.id, { action: "shutdown" });
    expect((await usage("count")).vms).toBe(2);
    await actOn(deps, p, a.vm!.id, { action: "destroy" });
    expect(await usage("count")).toEqual({ vms: 1, vcpus: 1, memoryMiB: 256 });
    expect((await actOn(deps, p, c.vm!.id, { action: "start" })).op.status).toBe("succeeded");
    expect(await usage("count")).toEqual({ vms: 2, vcpus: 2, memoryMiB: 512 });

    for (const vm of [b.vm!, c.vm!]) await actOn(deps, p, vm.id, { action: "delete" });
    await actOn(deps, p, a.vm!.id, { action: "delete" }); // never placed again: nothing to give back
    expect(await usage("count")).toEqual({ vms: 0, vcpus: 0, memoryMiB: 0 });
  });

  it("names the vCPU and memory limits when those run out", async () => {
    const deps = depsWith({ projects: { sized: { vcpus: 4, memoryMiB: 1024 } } });
    const p = user("sized");
    expect((await startVm(deps, p, { name: "s-1", vcpus: 3, memoryMiB: 256 })).op.status).toBe("succeeded");
    const cpu = await startVm(deps, p, { name: "s-2", vcpus: 2, memoryMiB: 256 });
    expect(cpu.op.error).toMatchObject({
      code: "quota_exceeded",
      details: { dimension: "vcpus", limit: 4, used: 3 },
    });
    expect(cpu.op.error?.message).toMatch(/quota of 4 vCPUs: 3 in use, 2 more asked/);
    const mem = await startVm(deps, p, { name: "s-3", vcpus: 1, memoryMiB: 1000 });
    expect(mem.op.error).toMatchObject({
      code: "quota_exceeded",
      details: { dimension: "memoryMiB", limit: 1024, used: 256, requested: 1000 },
    });
    // Exactly at the limit fits.
    expect((await startVm(deps, p, { name: "s-4", vcpus: 1, memoryMiB: 768 })).op.status).toBe("succeeded");
    expect(await usage("sized")).toEqual({ vms: 2, vcpus: 4, memoryMiB: 1024 });
  });

  it("vetoes at once a VM bigger than the whole quota", async () => {
    const deps = depsWith({ default: { vcpus: 4 } });
    await expect(
      createVm(
        deps,
        { principal: user("tiny"), requestId: "r-big" },
        { name: "big", vcpus: 8, memoryMiB: 256 },
      ),
    ).rejects.toMatchObject({
      code: "vetoed",
      message: "this VM could never fit project tiny's quota of 4 vCPUs (it needs 8)",
      details: { plugin: "quotas", reason: "quota_exceeded", dimension: "vcpus", limit: 4, requested: 8 },
    });
    expect(await usage("tiny")).toEqual({ vms: 0, vcpus: 0, memoryMiB: 0 });
  });

  it("leaves usage alone through a migration", async () => {
    const deps = depsWith({ default: { vms: 5 } });
    const p = user("mover");
    const { vm } = await startVm(deps, p, { name: "m", vcpus: 2 });
    const target = vm!.hostId === "q-h1" ? "q-h2" : "q-h1";
    const moved = await actOn(deps, admin, vm!.id, { action: "migrate", targetHostId: target });
    expect(moved.vm?.hostId).toBe(target);
    expect(await usage("mover")).toEqual({ vms: 1, vcpus: 2, memoryMiB: 256 });
    await actOn(deps, p, vm!.id, { action: "delete" });
    expect(await usage("mover")).toEqual({ vms: 0, vcpus: 0, memoryMiB: 0 });
  });

  it("never lets concurrent starts past the limit", async () => {
    const deps = depsWith({ default: { vms: 5 } });
    const p = user("rush");
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => startVm(deps, p, { name: `r-${i}` })),
    );
    expect(results.filter((r) => r.op.status === "succeeded")).toHaveLength(5);
    for (const r of results.filter((x) => x.op.status === "failed"))
      expect(r.op.error?.code).toBe("quota_exceeded");
    expect((await usage("rush")).vms).toBe(5);
  });
});

describe("gang batches", () => {
  it("charges a batch as one update per project, and refuses a batch beyond the limit whole", async () => {
    const plugin = quotas({ default: { vms: 4, vcpus: 10 } });
    const deps = bed.deps({ config: { plugins: [plugin] } });
    const ctx = { deps, log: deps.log, signal: new AbortController().signal } as PluginContext;
    const host = (await getHostItem(deps, "q-h1"))!;
    const vm = (i: number, project: string) =>
      ({ id: `vm-qg-${i}`, name: `g-${i}`, project, spec: { vcpus: 2, memoryMiB: 128 } }) as VmItem;
    const batch = (vms: VmItem[]) => ({
      op: { id: "op-qg", args: {} } as unknown as OpItem,
      field: "hostId" as const,
      placements: vms.map((v) => ({ vm: v, host })),
    });

    const c = (await plugin.hooks.claim!(ctx, batch([vm(1, "ga"), vm(2, "ga"), vm(3, "ga"), vm(4, "gb")])))!;
    expect(c.items).toHaveLength(2);
    await transact(deps.db, c.items);
    expect(await usage("ga")).toEqual({ vms: 3, vcpus: 6, memoryMiB: 384 });
    expect(await usage("gb")).toEqual({ vms: 1, vcpus: 2, memoryMiB: 128 });

    await expect(plugin.hooks.claim!(ctx, batch([vm(5, "ga"), vm(6, "ga")]))).rejects.toMatchObject({
      code: "quota_exceeded",
      details: { dimension: "vms", limit: 4, used: 3, requested: 2 },
    });

    // Released together, again one update per project.
    const charged = [1, 2, 3].map((i) => ({
      ...vm(i, "ga"),
      quotaCharge: { vms: 1, vcpus: 2, memoryMiB: 128 },
    }));
    const r = (await plugin.hooks.release!(ctx, { vms: charged }))!;
    expect(r.items).toHaveLength(1);
    expect(r.vmRemove).toEqual({
      "vm-qg-1": ["quotaCharge"],
      "vm-qg-2": ["quotaCharge"],
      "vm-qg-3": ["quotaCharge"],
    });
    await transact(deps.db, r.items);
    expect(await usage("ga")).toEqual({ vms: 0, vcpus: 0, memoryMiB: 0 });
  });
});
