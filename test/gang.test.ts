/**
 * Gang placement of virtual clusters against real DynamoDB Local and fauxqs: all members placed in
 * one transaction or none, the same recorded reason for every member when nothing fits, concurrent
 * handlers of different members converging on one decision, and resource plugins' writes joining it.
 * Each test has a site of its own, so their hosts never meet.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Principal } from "../shared/auth/principal.ts";
import type { CreateCluster } from "../shared/contracts/cluster.ts";
import type { Operation, Vm } from "../shared/contracts/vm.ts";
import { ErrorCode, UsherError } from "../shared/errors.ts";
import type { UsherConfig } from "../shared/plugins/config.ts";
import type { Plugin } from "../shared/plugins/types.ts";
import { createCluster, MAX_CLUSTER_VMS } from "../shared/services/clusters.ts";
import type { Deps } from "../shared/services/context.ts";
import { createHost } from "../shared/services/hosts.ts";
import { getOpItem } from "../shared/services/operations.ts";
import { scheduleOperation } from "../shared/services/scheduling.ts";
import { getVmItem, requestAction } from "../shared/services/vms.ts";
import { getItem, putOf, queryAll } from "../shared/store/base.ts";
import type { ClaimItem, ClusterItem, HostItem, VmItem } from "../shared/store/items.ts";
import { keys } from "../shared/store/keys.ts";
import { type ServiceBed, startServiceBed } from "./support/services.ts";

const SITES = ["fits", "fails", "race", "race-fail", "plugins", "quota", "later", "groups"];
let bed: ServiceBed;
const alice: Principal = { subject: "alice", project: "alpha", roles: ["user"] };

beforeAll(async () => {
  bed = await startServiceBed(SITES);
});
afterAll(() => bed?.stop());

async function hosts(deps: Deps, site: string, specs: { id: string; vcpus: number }[]) {
  for (const h of specs)
    await createHost(
      deps,
      { actor: "root", requestId: `req-${h.id}` },
      {
        id: h.id,
        site,
        kind: "sim",
        address: `${h.id}.sim`,
        capacity: { vcpus: h.vcpus, memoryMiB: 16384 },
      },
    );
}

type Created = { cluster: { id: string }; vms: Vm[]; operations: Operation[] };
async function cluster(deps: Deps, body: CreateCluster): Promise<Created> {
  return (await createCluster(deps, { principal: alice, requestId: `req-${body.name}` }, body))
    .body as Created;
}

const schedule = (deps: Deps, op: Operation) =>
  scheduleOperation(deps, { opId: op.id, requestId: op.requestId });
const ops = async (deps: Deps, c: Created) => Promise.all(c.operations.map((o) => getOpItem(deps, o.id)));
const vms = async (deps: Deps, c: Created) =>
  (await Promise.all(c.vms.map((v) => getVmItem(deps, v.id)))) as VmItem[];
const clusterItem = (deps: Deps, c: Created) => getItem<ClusterItem>(deps.db, keys.cluster(c.cluster.id));
const claimsOn = (deps: Deps, hostId: string) =>
  queryAll<ClaimItem>(deps.db, {
    KeyConditionExpression: "pk = :pk AND begins_with(sk, :c)",
    ExpressionAttributeValues: { ":pk": keys.host(hostId).pk, ":c": "CLAIM#" },
  });
const clusterEvents = (deps: Deps, c: Created) =>
  queryAll<{ eventType: string; data: Record<string, unknown> }>(deps.db, {
    KeyConditionExpression: "pk = :pk AND begins_with(sk, :e)",
    ExpressionAttributeValues: { ":pk": keys.cluster(c.cluster.id).pk, ":e": "EV#" },
  });

describe("gang placement", () => {
  it("places every member with the first member's start, in one decision, anti-affinity across them", async () => {
    const deps = bed.deps();
    await hosts(deps, "fits", [
      { id: "fits-1", vcpus: 8 },
      { id: "fits-2", vcpus: 8 },
      { id: "fits-3", vcpus: 8 },
    ]);
    const c = await cluster(deps, {
      name: "spread",
      site: "fits",
      count: 3,
      vcpus: 2,
      memoryMiB: 1024,
      placement: { antiAffinityGroup: "spread" },
    });
    expect(c.vms.every((v) => v.placement?.antiAffinityGroup === "spread")).toBe(true);
    await schedule(deps, c.operations[1]!);
    // One handler placed the whole gang; only its own member was dispatched so far.
    const placed = await vms(deps, c);
    expect(new Set(placed.map((v) => v.hostId))).toEqual(new Set(["fits-1", "fits-2", "fits-3"]));
    expect((await ops(deps, c)).map((o) => o?.status)).toEqual(["queued", "dispatched", "queued"]);
    for (const vm of placed) {
      const claims = await claimsOn(deps, vm.hostId!);
      // Each claim is made under the member's own first start, so a failed start releases its own.
      expect(claims).toEqual([
        expect.objectContaining({
          vmId: vm.id,
          opId: c.operations[c.vms.findIndex((v) => v.id === vm.id)]!.id,
        }),
      ]);
      const host = await getItem<HostItem>(deps.db, keys.host(vm.hostId!));
      expect(host?.freeVcpus).toBe(6);
    }
    expect((await clusterItem(deps, c))?.gang?.status).toBe("placed");
    await Promise.all([schedule(deps, c.operations[0]!), schedule(deps, c.operations[2]!)]);
    const after = await ops(deps, c);
    expect(after.map((o) => o?.status)).toEqual(["dispatched", "dispatched", "dispatched"]);
    expect(after.map((o) => o?.hostId)).toEqual(placed.map((v) => v.hostId));
  });

  it("places none when one member fits nowhere, and every member fails with the same per-filter reason", async () => {
    const deps = bed.deps();
    await hosts(deps, "fails", [
      { id: "fails-1", vcpus: 8 },
      { id: "fails-2", vcpus: 8 },
      { id: "fails-3", vcpus: 8 },
    ]);
    const c = await cluster(deps, {
      name: "too-wide",
      site: "fails",
      members: [
        { role: "head", count: 1, vcpus: 6, memoryMiB: 1024, placement: { antiAffinityGroup: "w" } },
        { role: "worker", count: 3, vcpus: 1, memoryMiB: 512, placement: { antiAffinityGroup: "w" } },
      ],
    });
    for (const op of c.operations) await schedule(deps, op);
    const done = await ops(deps, c);
    expect(done.map((o) => o?.status)).toEqual(["failed", "failed", "failed", "failed"]);
    const errors = done.map((o) => o?.error);
    for (const e of errors) expect(e).toEqual(errors[0]);
    const error = errors[0]!;
    expect(error.code).toBe("no_capacity");
    // Largest first: the head takes a host, two workers take the others, the last worker finds none.
    expect(error.message).toMatch(
      /^cluster too-wide: no member was placed, as member too-wide-worker-\d fits no host: no host fits among 3 considered: anti_affinity rejected 3 \(host holds a member of the VM's anti-affinity group\) in site fails$/,
    );
    expect(error.details).toMatchObject({
      considered: 3,
      rejections: { anti_affinity: { count: 3 } },
      policy: "pack",
    });
    for (const h of ["fails-1", "fails-2", "fails-3"]) {
      expect(await claimsOn(deps, h)).toEqual([]);
      expect((await getItem<HostItem>(deps.db, keys.host(h)))?.freeVcpus).toBe(8);
    }
    expect((await vms(deps, c)).map((v) => [v.state, v.hostId])).toEqual(Array(4).fill(["error", undefined]));
    const record = await clusterItem(deps, c);
    expect(record?.gang).toMatchObject({ status: "failed", error });
    expect((await clusterEvents(deps, c)).map((e) => e.eventType)).toContain("cluster.placement_failed");
  });

  it("converges when every member's start is handled at once: one decision, one claim each", async () => {
    const deps = bed.deps();
    await hosts(deps, "race", [
      { id: "race-1", vcpus: 6 },
      { id: "race-2", vcpus: 6 },
      { id: "race-3", vcpus: 6 },
      { id: "race-4", vcpus: 6 },
    ]);
    const made: Created[] = [];
    for (const name of ["race-a", "race-b"])
      made.push(await cluster(deps, { name, site: "race", count: 4, vcpus: 3, memoryMiB: 512 }));
    // Two schedulers (separate Deps, as two processes) handle all eight starts at once.
    const other = bed.deps();
    await Promise.all(made.flatMap((c) => c.operations.map((op, i) => schedule(i % 2 ? deps : other, op))));
    let used = 0;
    for (const c of made) {
      const placed = await vms(deps, c);
      expect(placed.every((v) => v.hostId?.startsWith("race-"))).toBe(true);
      const decided = (await clusterEvents(deps, c)).filter((e) => e.eventType === "cluster.placed");
      expect(decided).toHaveLength(1);
      expect(decided[0]!.data.hosts).toEqual(Object.fromEntries(placed.map((v) => [v.id, v.hostId])));
      const done = await ops(deps, c);
      expect(done.map((o) => o?.status)).toEqual(Array(4).fill("dispatched"));
      expect(done.map((o) => o?.hostId)).toEqual(placed.map((v) => v.hostId));
      used += placed.length;
    }
    // 8 members of 3 vCPUs on 4 hosts of 6: exactly full, one claim per member, none over.
    let claims = 0;
    for (const h of ["race-1", "race-2", "race-3", "race-4"]) {
      claims += (await claimsOn(deps, h)).length;
      expect((await getItem<HostItem>(deps.db, keys.host(h)))?.freeVcpus).toBe(0);
    }
    expect(claims).toBe(used);
  });

  it("converges on a failure too: concurrent handlers all fail with the one recorded reason", async () => {
    const deps = bed.deps();
    await hosts(deps, "race-fail", [{ id: "rf-1", vcpus: 4 }]);
    const c = await cluster(deps, { name: "rf", site: "race-fail", count: 3, vcpus: 2, memoryMiB: 256 });
    await Promise.all(c.operations.map((op, i) => schedule(i % 2 ? deps : bed.deps(), op)));
    const done = await ops(deps, c);
    expect(done.map((o) => o?.status)).toEqual(["failed", "failed", "failed"]);
    expect(new Set(done.map((o) => JSON.stringify(o?.error))).size).toBe(1);
    expect(done[0]?.error?.message).toMatch(/vcpus rejected 1 \(not enough free vCPUs\)/);
    expect(await claimsOn(deps, "rf-1")).toEqual([]);
    expect(
      (await clusterEvents(deps, c)).filter((e) => e.eventType.startsWith("cluster.placement")),
    ).toHaveLength(1);
  });

  it("joins resource plugins' writes to the gang's transaction, and fails it whole with a plugin's refusal", async () => {
    // A plugin writing one item per member and a field on each VM, as an address manager does.
    const tags: Plugin = {
      name: "tags",
      runsIn: "control-plane",
      hooks: {
        claim: (ctx, batch) => ({
          items: batch.placements.map(({ vm, host }) => ({
            Put: putOf(ctx.deps.db.table, { pk: `TAG#${vm.id}`, sk: "TAG", hostId: host.id }),
          })),
          vmSet: Object.fromEntries(batch.placements.map(({ vm }) => [vm.id, { tag: `on-${vm.id}` }])),
        }),
      },
    };
    // A plugin whose one item never fits, as a quota already used up: its condition fails.
    const full: Plugin = {
      name: "full",
      runsIn: "control-plane",
      hooks: {
        claim: (ctx, batch) =>
          batch.placements[0]!.vm.site === "quota"
            ? {
                items: [
                  {
                    Put: putOf(
                      ctx.deps.db.table,
                      { pk: "QUOTA#alpha", sk: "QUOTA" },
                      { expr: "attribute_exists(pk)" },
                    ),
                  },
                ],
                onConditionFailed: () =>
                  new UsherError(ErrorCode.quotaExceeded, "project alpha is out of vCPUs"),
              }
            : undefined,
      },
    };
    const config: UsherConfig = { plugins: [tags, full] };
    const deps = bed.deps({ config });
    await hosts(deps, "plugins", [{ id: "pl-1", vcpus: 8 }]);
    const ok = await cluster(deps, { name: "tagged", site: "plugins", count: 2, vcpus: 1, memoryMiB: 256 });
    await schedule(deps, ok.operations[0]!);
    for (const vm of await vms(deps, ok)) {
      expect(vm.hostId).toBe("pl-1");
      expect((vm as VmItem & { tag?: string }).tag).toBe(`on-${vm.id}`);
      expect(await getItem(deps.db, { pk: `TAG#${vm.id}`, sk: "TAG" })).toMatchObject({ hostId: "pl-1" });
    }

    await hosts(deps, "quota", [{ id: "q-1", vcpus: 8 }]);
    const refused = await cluster(deps, {
      name: "refused",
      site: "quota",
      count: 2,
      vcpus: 1,
      memoryMiB: 256,
    });
    for (const op of refused.operations) await schedule(deps, op);
    const done = await ops(deps, refused);
    expect(done.map((o) => o?.error?.code)).toEqual(["quota_exceeded", "quota_exceeded"]);
    expect(await claimsOn(deps, "q-1")).toEqual([]);
    for (const vm of await vms(deps, refused)) {
      expect(vm.hostId).toBeUndefined();
      expect(await getItem(deps.db, { pk: `TAG#${vm.id}`, sk: "TAG" })).toBeUndefined();
    }
  });

  it("places a member's later start alone, once the gang has been decided", async () => {
    const deps = bed.deps();
    await hosts(deps, "later", [{ id: "later-1", vcpus: 4 }]);
    const c = await cluster(deps, { name: "later", site: "later", count: 3, vcpus: 2, memoryMiB: 256 });
    for (const op of c.operations) await schedule(deps, op);
    expect((await ops(deps, c)).map((o) => o?.status)).toEqual(["failed", "failed", "failed"]);
    // The cluster as a whole did not fit; one member on its own does.
    const again = await requestAction(deps, { principal: alice, requestId: "req-later" }, c.vms[0]!.id, {
      action: "start",
    });
    const op = (again.body as { operation: Operation }).operation;
    await schedule(deps, op);
    expect((await getOpItem(deps, op.id))?.status).toBe("dispatched");
    expect((await getVmItem(deps, c.vms[0]!.id))?.hostId).toBe("later-1");
  });

  it("keeps an affinity group on one host and refuses clusters a transaction could not place", async () => {
    const deps = bed.deps();
    await hosts(deps, "groups", [
      { id: "groups-1", vcpus: 3 },
      { id: "groups-2", vcpus: 16 },
    ]);
    const c = await cluster(deps, {
      name: "together",
      site: "groups",
      count: 4,
      vcpus: 2,
      memoryMiB: 256,
      placement: { affinityGroup: "t" },
    });
    await schedule(deps, c.operations[3]!);
    expect((await vms(deps, c)).map((v) => v.hostId)).toEqual(Array(4).fill("groups-2"));
    await expect(
      cluster(deps, { name: "huge", site: "groups", count: MAX_CLUSTER_VMS + 1, vcpus: 1, memoryMiB: 16 }),
    ).rejects.toThrow(`a cluster holds at most ${MAX_CLUSTER_VMS} VMs per request`);
    expect(MAX_CLUSTER_VMS).toBe(24);
  });
});
