/**
 * The IP manager against real DynamoDB Local, through the real scheduler and finisher: an address
 * per VM placed, given back when it leaves its home host (never on a migration), never twice, within
 * the access lists, and distinct across a gang's batch.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { admin, type ServiceBed, startServiceBed } from "../../../test/support/services.ts";
import { actOn, startVm } from "../../../test/support/vm-flows.ts";
import type { Principal } from "../../auth/principal.ts";
import { createHost, getHostItem } from "../../services/hosts.ts";
import { createVm, getVmItem } from "../../services/vms.ts";
import { getItem, queryAll, transact } from "../../store/base.ts";
import { type OpItem, type VmItem, vmView } from "../../store/items.ts";
import type { PluginContext } from "../types.ts";
import { type AddressItem, type IpRange, ipamKeys, ipManager } from "./ipam.ts";
import { ipToInt } from "./ipv4.ts";

let bed: ServiceBed;

beforeAll(async () => {
  bed = await startServiceBed();
  for (const id of ["ip-h1", "ip-h2"]) {
    await createHost(
      bed.deps(),
      { actor: "root", requestId: "req" },
      { id, site: "local", kind: "sim", address: `${id}.sim`, capacity: { vcpus: 64, memoryMiB: 65_536 } },
    );
  }
}, 60_000);
afterAll(() => bed?.stop());

const user = (project: string, roles: Principal["roles"] = ["user"]): Principal => ({
  subject: `u-${project}`,
  project,
  roles,
});
const depsWith = (...ranges: IpRange[]) => bed.deps({ config: { plugins: [ipManager({ ranges })] } });
const held = async (range: string) =>
  queryAll<AddressItem>(bed.deps().db, {
    KeyConditionExpression: "pk = :pk",
    ExpressionAttributeValues: { ":pk": ipamKeys.address(range, "").pk },
    ConsistentRead: true,
  });

describe("ipManager options", () => {
  it("refuses ranges it could not hand out from, at start-up", () => {
    const bad: IpRange[] = [
      { name: "Bad Name", cidr: "10.0.0.0/24" },
      { name: "a", cidr: "10.0.0.1/24" },
      { name: "a", cidr: "10.0.0.0/31" },
      { name: "a", cidr: "10.0.0.0/24", first: "10.0.1.1" },
      { name: "a", cidr: "10.0.0.0/24", first: "10.0.0.9", last: "10.0.0.8" },
      { name: "a", cidr: "10.0.0.0/24", gateway: "10.0.0.255" },
      { name: "a", cidr: "10.0.0.0/24", vlan: 4095 },
    ];
    for (const r of bad) expect(() => ipManager({ ranges: [r] }), JSON.stringify(r)).toThrow(/ipam|IPv4/);
    expect(() => ipManager({ ranges: [] })).toThrow(/at least one/);
    const dup = { name: "a", cidr: "10.0.0.0/24" };
    expect(() => ipManager({ ranges: [dup, dup] })).toThrow(/unique/);
  });
});

describe("allocation and release", () => {
  it("gives a placed VM an address with its range's gateway and VLAN, and takes it back on destroy", async () => {
    const deps = depsWith({ name: "net-a", cidr: "10.1.0.0/24", gateway: "10.1.0.1", vlan: 42 });
    const { vm, op } = await startVm(deps, user("alpha"), { name: "a-1" });
    expect(op.status).toBe("succeeded");
    expect(vm?.network).toMatchObject({ range: "net-a", prefixLength: 24, gateway: "10.1.0.1", vlan: 42 });
    const address = vm!.network!.address;
    expect(ipToInt(address)).toBeGreaterThan(ipToInt("10.1.0.1"));
    expect(ipToInt(address)).toBeLessThan(ipToInt("10.1.0.255"));
    expect(vmView(vm!).network).toEqual(vm!.network);
    const item = await getItem<AddressItem>(deps.db, ipamKeys.address("net-a", address));
    expect(item).toMatchObject({ vmId: vm!.id, project: "alpha", opId: op.id });

    // A stopped VM keeps its home host, and so its address; a start of it takes no new one.
    const stopped = await actOn(deps, user("alpha"), vm!.id, { action: "shutdown" });
    expect(stopped.vm?.network?.address).toBe(address);
    const again = await actOn(deps, user("alpha"), vm!.id, { action: "start" });
    expect(again.vm?.network?.address).toBe(address);
    expect(await held("net-a")).toHaveLength(1);

    const destroyed = await actOn(deps, user("alpha"), vm!.id, { action: "destroy" });
    expect(destroyed.vm).toMatchObject({ state: "destroyed" });
    expect(destroyed.vm?.network).toBeUndefined();
    expect(vmView(destroyed.vm!).network).toBeNull();
    expect(await held("net-a")).toHaveLength(0);

    // Placed again: a new address (possibly the same one, now free).
    const restarted = await actOn(deps, user("alpha"), vm!.id, { action: "start" });
    expect(restarted.vm?.network?.range).toBe("net-a");
    expect(await held("net-a")).toHaveLength(1);
    await actOn(deps, user("alpha"), vm!.id, { action: "delete" });
    expect(await getVmItem(deps, vm!.id)).toBeUndefined();
    expect(await held("net-a")).toHaveLength(0);
  });

  it("keeps the address through a migration", async () => {
    const deps = depsWith({ name: "net-m", cidr: "10.2.0.0/28" });
    const { vm } = await startVm(deps, user("alpha"), { name: "m-1" });
    const target = vm!.hostId === "ip-h1" ? "ip-h2" : "ip-h1";
    const moved = await actOn(deps, admin, vm!.id, { action: "migrate", targetHostId: target });
    expect(moved.op.status).toBe("succeeded");
    expect(moved.vm).toMatchObject({ hostId: target, network: vm!.network });
    expect((await held("net-m")).map((i) => i.address)).toEqual([vm!.network!.address]);
    await actOn(deps, user("alpha"), vm!.id, { action: "delete" });
    expect(await held("net-m")).toHaveLength(0);
  });

  it("fails a start with no_capacity when the range is exhausted, claiming nothing", async () => {
    // .1 is the gateway: three addresses (.2, .3, .4) to hand out.
    const deps = depsWith({
      name: "net-x",
      cidr: "10.3.0.0/29",
      gateway: "10.3.0.1",
      first: "10.3.0.1",
      last: "10.3.0.4",
    });
    const placed: VmItem[] = [];
    for (const i of [1, 2, 3]) placed.push((await startVm(deps, user("alpha"), { name: `x-${i}` })).vm!);
    expect(new Set(placed.map((v) => v.network?.address))).toEqual(
      new Set(["10.3.0.2", "10.3.0.3", "10.3.0.4"]),
    );
    const hostsBefore = await Promise.all(["ip-h1", "ip-h2"].map((h) => getHostItem(deps, h)));
    const { vm, op } = await startVm(deps, user("alpha"), { name: "x-4" });
    expect(op.status).toBe("failed");
    expect(op.error).toMatchObject({ code: "no_capacity", details: { reason: "addresses_exhausted" } });
    expect(op.error?.message).toMatch(/no free address for VM x-4 in range net-x/);
    expect(vm).toMatchObject({ state: "error" });
    expect(vm?.hostId).toBeUndefined();
    expect(vm?.network).toBeUndefined();
    const hostsAfter = await Promise.all(["ip-h1", "ip-h2"].map((h) => getHostItem(deps, h)));
    expect(hostsAfter.map((h) => h?.freeVcpus)).toEqual(hostsBefore.map((h) => h?.freeVcpus));

    // One given back: the failed VM can start now.
    await actOn(deps, user("alpha"), placed[1]!.id, { action: "destroy" });
    const retried = await actOn(deps, user("alpha"), vm!.id, { action: "start" });
    expect(retried.op.status).toBe("succeeded");
    expect(retried.vm?.network?.address).toBe(placed[1]!.network!.address);
  });

  it("hands out distinct addresses to concurrent starts, failing only those beyond the range", async () => {
    const deps = depsWith({ name: "net-c", cidr: "10.4.0.0/28" }); // 14 addresses
    const results = await Promise.all(
      Array.from({ length: 18 }, (_, i) => startVm(deps, user("alpha"), { name: `c-${i}` })),
    );
    const ok = results.filter((r) => r.op.status === "succeeded");
    expect(ok).toHaveLength(14);
    const addresses = ok.map((r) => r.vm!.network!.address);
    expect(new Set(addresses).size).toBe(14);
    for (const r of results.filter((x) => x.op.status === "failed"))
      expect(r.op.error?.code).toBe("no_capacity");
    expect((await held("net-c")).map((i) => i.vmId).sort()).toEqual(ok.map((r) => r.vm!.id).sort());
  });
});

describe("access lists and asked-for ranges", () => {
  const ranges: IpRange[] = [
    { name: "acl-beta", cidr: "10.5.0.0/28", projects: ["beta"] },
    { name: "acl-ops", cidr: "10.5.1.0/28", roles: ["operator"] },
    { name: "acl-any", cidr: "10.5.2.0/28" },
  ];

  it("draws from the first range open to the project or the requester's roles", async () => {
    const deps = depsWith(...ranges);
    expect((await startVm(deps, user("beta"), { name: "b-1" })).vm?.network?.range).toBe("acl-beta");
    const op = (await startVm(deps, user("gamma", ["operator"]), { name: "o-1" })).vm;
    expect(op?.network?.range).toBe("acl-ops");
    expect((await startVm(deps, user("gamma"), { name: "g-1" })).vm?.network?.range).toBe("acl-any");
  });

  it("vetoes a request no range is open to, before anything is written", async () => {
    const deps = depsWith(ranges[0]!, ranges[1]!);
    await expect(
      createVm(
        deps,
        { principal: user("gamma"), requestId: "r-acl" },
        { name: "g-2", vcpus: 1, memoryMiB: 256 },
      ),
    ).rejects.toMatchObject({ code: "vetoed", message: "no address range is open to project gamma" });
    const vms = await queryAll<VmItem>(deps.db, {
      IndexName: "gsi1",
      KeyConditionExpression: "gsi1pk = :pk",
      FilterExpression: "#n = :n",
      ExpressionAttributeNames: { "#n": "name" },
      ExpressionAttributeValues: { ":pk": "PROJ#gamma#VM", ":n": "g-2" },
    });
    expect(vms).toHaveLength(0);
  });

  it("draws from the range a VM's label asks for, if it is open to the VM", async () => {
    const deps = depsWith(...ranges);
    const asked = await startVm(deps, user("beta"), { name: "b-2", labels: { "ipam/range": "acl-any" } });
    expect(asked.vm?.network?.range).toBe("acl-any");
    // A range the VM may not draw from is refused with the request, before anything is written.
    const create = (name: string, range: string) =>
      createVm(
        deps,
        { principal: user("gamma"), requestId: `r-${name}` },
        { name, vcpus: 1, memoryMiB: 256, labels: { "ipam/range": range } },
      );
    await expect(create("g-3", "acl-beta")).rejects.toMatchObject({
      code: "vetoed",
      message: "address range acl-beta is not open to project gamma",
    });
    await expect(create("g-4", "nope")).rejects.toMatchObject({
      code: "vetoed",
      message: expect.stringMatching(/asks for address range nope, which does not exist/),
    });
    const written = await queryAll<VmItem>(deps.db, {
      IndexName: "gsi1",
      KeyConditionExpression: "gsi1pk = :pk",
      ExpressionAttributeValues: { ":pk": "PROJ#gamma#VM" },
    });
    expect(written.map((v) => v.name)).not.toEqual(expect.arrayContaining(["g-3"]));
    expect(written.map((v) => v.name)).not.toEqual(expect.arrayContaining(["g-4"]));
  });
});

describe("gang batches", () => {
  it("gives every VM of one claim batch its own address, in one contribution", async () => {
    const plugin = ipManager({ ranges: [{ name: "net-g", cidr: "10.6.0.0/29" }] }); // 6 addresses
    const deps = bed.deps({ config: { plugins: [plugin] } });
    const ctx = { deps, log: deps.log, signal: new AbortController().signal } as PluginContext;
    const host = (await getHostItem(deps, "ip-h1"))!;
    const op = { id: "op-gang", args: {} } as unknown as OpItem;
    const vm = (i: number) =>
      ({ id: `vm-gang-${i}`, name: `g-${i}`, project: "alpha", labels: {} }) as VmItem;
    const batch = (vms: VmItem[]) => ({
      op,
      field: "hostId" as const,
      placements: vms.map((v) => ({ vm: v, host })),
    });

    const c = (await plugin.hooks.claim!(ctx, batch([1, 2, 3, 4, 5].map(vm))))!;
    expect(c.items).toHaveLength(5);
    const addresses = [1, 2, 3, 4, 5].map(
      (i) => (c.vmSet?.[`vm-gang-${i}`]?.network as { address?: string } | undefined)?.address,
    );
    expect(new Set(addresses).size).toBe(5);
    await transact(deps.db, c.items);
    expect(await held("net-g")).toHaveLength(5);

    // Two more than the one left: the whole batch is refused.
    await expect(plugin.hooks.claim!(ctx, batch([6, 7].map(vm)))).rejects.toMatchObject({
      code: "no_capacity",
    });
    // A migration target's claim takes no address.
    expect(await plugin.hooks.claim!(ctx, { ...batch([vm(8)]), field: "migrationHostId" })).toBeUndefined();

    // Released together; a VM leaving its home only for its migration's target keeps its address.
    const placed = [1, 2].map((i) => ({
      ...vm(i),
      hostId: "ip-h1",
      network: c.vmSet?.[`vm-gang-${i}`]?.network as VmItem["network"],
    }));
    const migrate = { id: "op-m", action: "migrate", args: {} } as unknown as OpItem;
    const moving = { ...placed[0]!, migrationHostId: "ip-h2" };
    expect(await plugin.hooks.release!(ctx, { op: migrate, vms: [moving] })).toBeUndefined();
    const r = (await plugin.hooks.release!(ctx, { op: migrate, vms: placed }))!;
    expect(r.vmRemove).toEqual({ "vm-gang-1": ["network"], "vm-gang-2": ["network"] });
    await transact(deps.db, r.items);
    expect(await held("net-g")).toHaveLength(3);
  });
});
