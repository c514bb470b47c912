/**
 * Single-VM placement on the pipeline, against real DynamoDB Local and fauxqs: the policy chosen per
 * cluster, project or site (and refused when unknown), plugins' filters in a site's policy, and
 * placement constraints (labels, groups scoped per project, same and different host). Each test has
 * a site of its own.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Principal } from "../shared/auth/principal.ts";
import type { CreateVm, Operation, Vm } from "../shared/contracts/vm.ts";
import { argumentPolicy } from "../shared/plugins/builtin/arguments.ts";
import type { UsherConfig } from "../shared/plugins/config.ts";
import type { Plugin } from "../shared/plugins/types.ts";
import { ALL_FILTERS, POLICIES } from "../shared/scheduler/policy.ts";
import { createCluster } from "../shared/services/clusters.ts";
import type { Deps } from "../shared/services/context.ts";
import { schedulerDryRun } from "../shared/services/dry-run.ts";
import { HostCache } from "../shared/services/host-cache.ts";
import { createHost, getHost, patchHost } from "../shared/services/hosts.ts";
import { getOpItem } from "../shared/services/operations.ts";
import { handleReport } from "../shared/services/results.ts";
import { scheduleOperation } from "../shared/services/scheduling.ts";
import { createVm, getVmItem } from "../shared/services/vms.ts";
import { signReport } from "../shared/signing/envelopes.ts";
import { type ServiceBed, startServiceBed } from "./support/services.ts";

const SITES = ["pol", "proj", "plug", "labels", "stale", "anti", "scoped", "pair", "dry", "allow", "load"];
let bed: ServiceBed;
const alice: Principal = { subject: "alice", project: "alpha", roles: ["user"] };
const bob: Principal = { subject: "bob", project: "beta", roles: ["user"] };

/** A filter from a plugin: never hosts labelled `maintenance=yes`. */
const maintenance: Plugin = {
  name: "maintenance",
  runsIn: "control-plane",
  hooks: {},
  placement: {
    filters: {
      not_in_maintenance: {
        name: "not_in_maintenance",
        reason: "host is in maintenance",
        active: () => true,
        accepts: (s, i) => s.labels[i]?.maintenance !== "yes",
        keep(s, q, slots, n) {
          let kept = 0;
          for (let p = 0; p < n; p++) if (this.accepts(s, slots[p]!, q)) slots[kept++] = slots[p]!;
          return kept;
        },
      },
    },
  },
};

const config: UsherConfig = {
  plugins: [maintenance],
  scheduler: {
    defaultPolicy: "pack",
    projects: { beta: "spread" },
    policies: {
      careful: { filters: [...ALL_FILTERS, "not_in_maintenance"], weighers: POLICIES.pack.weighers },
    },
  },
};

beforeAll(async () => {
  bed = await startServiceBed(SITES);
});
afterAll(() => bed?.stop());

async function hosts(
  deps: Deps,
  site: string,
  specs: { id: string; vcpus?: number; labels?: Record<string, string> }[],
) {
  for (const h of specs)
    await createHost(
      deps,
      { actor: "root", requestId: `req-${h.id}` },
      {
        id: h.id,
        site,
        kind: "sim",
        address: `${h.id}.sim`,
        capacity: { vcpus: h.vcpus ?? 8, memoryMiB: 16384 },
        ...(h.labels ? { labels: h.labels } : {}),
      },
    );
}

/** Creates and schedules one VM; returns its operation as it ended up and the VM. */
async function start(deps: Deps, principal: Principal, body: CreateVm) {
  const res = (await createVm(deps, { principal, requestId: `req-${body.name}` }, body)).body as {
    vm: Vm;
    operation: Operation;
  };
  await scheduleOperation(deps, { opId: res.operation.id, requestId: res.operation.requestId });
  return { op: (await getOpItem(deps, res.operation.id))!, vm: (await getVmItem(deps, res.vm.id))! };
}

const small = { vcpus: 1, memoryMiB: 256 };

describe("policy", () => {
  it("follows the cluster's policy over the project's, the project's over the site's default", async () => {
    const deps = bed.deps({ config });
    await hosts(deps, "pol", [{ id: "pol-1" }, { id: "pol-2" }]);
    // alpha has no policy of its own: the site's default (pack) keeps filling pol-1.
    const a1 = await start(deps, alice, { name: "pol-a1", site: "pol", ...small });
    const a2 = await start(deps, alice, { name: "pol-a2", site: "pol", ...small });
    expect([a1.vm.hostId, a2.vm.hostId]).toEqual(["pol-1", "pol-1"]);
    // A cluster asking for spread goes to the emptier host, though its project packs.
    const res = await createCluster(
      deps,
      { principal: alice, requestId: "req-pol-c" },
      { name: "pol-c", site: "pol", count: 1, ...small, policy: "spread" },
    );
    const body = res.body as { cluster: { policy: string | null }; operations: Operation[] };
    expect(body.cluster.policy).toBe("spread");
    await scheduleOperation(deps, { opId: body.operations[0]!.id, requestId: "req-pol-c" });
    expect((await getOpItem(deps, body.operations[0]!.id))?.hostId).toBe("pol-2");
  });

  it("uses the project's policy, and refuses a cluster naming a policy the site lacks", async () => {
    const deps = bed.deps({ config });
    await hosts(deps, "proj", [{ id: "proj-1" }, { id: "proj-2" }]);
    const b1 = await start(deps, bob, { name: "proj-b1", site: "proj", ...small });
    const b2 = await start(deps, bob, { name: "proj-b2", site: "proj", ...small });
    expect(new Set([b1.vm.hostId, b2.vm.hostId]).size).toBe(2);
    await expect(
      createCluster(
        deps,
        { principal: bob, requestId: "req-bad" },
        { name: "bad", site: "proj", count: 1, ...small, policy: "no-such-policy" },
      ),
    ).rejects.toMatchObject({
      code: "validation_failed",
      message: "unknown scheduler policy no-such-policy",
    });
  });

  it("runs a plugin's filter named by a site policy, and names it when it rejects", async () => {
    const deps = bed.deps({ config });
    await hosts(deps, "plug", [{ id: "plug-1", labels: { maintenance: "yes" } }]);
    const res = await createCluster(
      deps,
      { principal: alice, requestId: "req-plug" },
      { name: "plug", site: "plug", count: 1, ...small, policy: "careful" },
    );
    const op = (res.body as { operations: Operation[] }).operations[0]!;
    await scheduleOperation(deps, { opId: op.id, requestId: op.requestId });
    const done = await getOpItem(deps, op.id);
    expect(done?.error?.code).toBe("no_capacity");
    expect(done?.error?.message).toMatch(/not_in_maintenance rejected 1 \(host is in maintenance\)/);
    expect(done?.error?.details).toMatchObject({ policy: "careful" });
  });
});

describe("constraints", () => {
  it("requires labels, and explains the hosts lacking them", async () => {
    const deps = bed.deps();
    await hosts(deps, "labels", [
      { id: "labels-1", labels: { zone: "a" } },
      { id: "labels-2", labels: { zone: "b" } },
    ]);
    const b = await start(deps, alice, {
      name: "lab-b",
      site: "labels",
      ...small,
      placement: { requiredLabels: { zone: "b" } },
    });
    expect(b.vm.hostId).toBe("labels-2");
    expect(b.vm.placement).toEqual({ requiredLabels: { zone: "b" } });
    expect(b.vm.spec).toEqual(small);
    const c = await start(deps, alice, {
      name: "lab-c",
      site: "labels",
      ...small,
      placement: { requiredLabels: { zone: "c" } },
    });
    expect(c.op.status).toBe("failed");
    expect(c.op.error).toMatchObject({
      code: "no_capacity",
      message:
        "no host fits among 2 considered: labels rejected 2 (host lacks a required label) in site labels",
      details: { considered: 2, rejections: { labels: { count: 2, reason: "host lacks a required label" } } },
    });
  });

  it("decides over its host cache, but never claims a host whose labels changed since it was read", async () => {
    const cache = new HostCache(60_000);
    const deps: Deps = { ...bed.deps(), hostCache: cache };
    await hosts(deps, "stale", [
      { id: "stale-1", labels: { zone: "a" } },
      { id: "stale-2", labels: { zone: "a" } },
    ]);
    const zoneA = { site: "stale", ...small, placement: { requiredLabels: { zone: "a" } } };
    expect((await start(deps, alice, { name: "stale-first", ...zoneA })).vm.hostId).toBe("stale-1");
    // The admin moves stale-1 out of the zone; the cache still holds it as the first placement read
    // it, where pack prefers it (fuller).
    await patchHost(deps, "root", "req-move", "stale-1", { labels: { zone: "b" } });
    const second = await start(deps, alice, { name: "stale-second", ...zoneA });
    expect(second.op.status).toBe("dispatched");
    expect(second.vm.hostId).toBe("stale-2");
    // One read of the site: the second placement chose over the cache, and its failed claim on
    // stale-1 (settings changed) re-read that host alone.
    expect(cache.reads).toBe(1);
  });

  it("keeps separately created members of an anti-affinity group apart, until no host is left", async () => {
    const deps = bed.deps();
    await hosts(deps, "anti", [{ id: "anti-1" }, { id: "anti-2" }]);
    const placement = { antiAffinityGroup: "db" };
    const one = await start(deps, alice, { name: "anti-a", site: "anti", ...small, placement });
    const two = await start(deps, alice, { name: "anti-b", site: "anti", ...small, placement });
    expect(new Set([one.vm.hostId, two.vm.hostId])).toEqual(new Set(["anti-1", "anti-2"]));
    const three = await start(deps, alice, { name: "anti-c", site: "anti", ...small, placement });
    expect(three.op.error?.message).toMatch(/anti_affinity rejected 2/);
  });

  it("scopes groups per project: another project's group of the same name does not count", async () => {
    const deps = bed.deps();
    await hosts(deps, "scoped", [{ id: "scoped-1" }]);
    const mine = await start(deps, alice, {
      name: "sc-a",
      site: "scoped",
      ...small,
      placement: { antiAffinityGroup: "db" },
    });
    const theirs = await start(deps, bob, {
      name: "sc-b",
      site: "scoped",
      ...small,
      placement: { antiAffinityGroup: "db" },
    });
    expect([mine.vm.hostId, theirs.vm.hostId]).toEqual(["scoped-1", "scoped-1"]);
    // Nor may a project place next to (or learn the host of) another project's VM by naming it.
    const probe = await start(deps, bob, {
      name: "sc-p",
      site: "scoped",
      ...small,
      placement: { sameHostAs: [mine.vm.id] },
    });
    expect(probe.op.error?.message).toMatch(/same_host rejected 1/);
  });

  it("places on the host of the VMs named, and away from others", async () => {
    const deps = bed.deps();
    await hosts(deps, "pair", [{ id: "pair-1" }, { id: "pair-2" }, { id: "pair-3" }]);
    const a = await start(deps, alice, { name: "pair-a", site: "pair", ...small });
    const b = await start(deps, alice, {
      name: "pair-b",
      site: "pair",
      ...small,
      placement: { differentHostFrom: [a.vm.id] },
    });
    expect(b.vm.hostId).not.toBe(a.vm.hostId);
    const c = await start(deps, alice, {
      name: "pair-c",
      site: "pair",
      ...small,
      placement: { sameHostAs: [b.vm.id] },
    });
    expect(c.vm.hostId).toBe(b.vm.hostId);
    const d = await start(deps, alice, {
      name: "pair-d",
      site: "pair",
      ...small,
      placement: { differentHostFrom: [a.vm.id, b.vm.id] },
    });
    expect(d.vm.hostId).toBe("pair-3");
    const e = await start(deps, alice, {
      name: "pair-e",
      site: "pair",
      ...small,
      placement: { sameHostAs: [a.vm.id, b.vm.id] },
    });
    expect(e.op.error?.message).toMatch(/same_host rejected 3/);
  });
});

describe("site policy and agent reports", () => {
  it("places only on the hosts the argument policy allows, a cluster's members too, and says so when none fits", async () => {
    const deps = bed.deps({
      config: { plugins: [argumentPolicy({ rules: [{ allowed: { hosts: ["allow-2", "allow-3"] } }] })] },
    });
    await hosts(deps, "allow", [{ id: "allow-1" }, { id: "allow-2", vcpus: 2 }, { id: "allow-3", vcpus: 2 }]);
    // Pack would pick a 2-vCPU host anyway; a 6-vCPU VM fits only allow-1, which is not allowed.
    const fits = await start(deps, alice, { name: "al-1", site: "allow", ...small });
    expect(["allow-2", "allow-3"]).toContain(fits.vm.hostId);
    const big = await start(deps, alice, { name: "al-2", site: "allow", vcpus: 6, memoryMiB: 256 });
    expect(big.op).toMatchObject({
      status: "failed",
      error: {
        code: "no_capacity",
        message: expect.stringContaining("among the hosts site policy allows (allow-2, allow-3)"),
        details: { allowedHosts: ["allow-2", "allow-3"] },
      },
    });
    const res = await createCluster(
      deps,
      { principal: alice, requestId: "req-al-c" },
      { name: "alc", site: "allow", count: 3, ...small },
    );
    const ops = (res.body as { operations: Operation[] }).operations;
    await scheduleOperation(deps, { opId: ops[0]!.id, requestId: "r" });
    for (const o of ops) {
      const vm = (await getVmItem(deps, o.vmId))!;
      expect(["allow-2", "allow-3"]).toContain(vm.hostId);
    }
  });

  it("with the load policy, prefers the host its agent reports least loaded", async () => {
    const deps = bed.deps({ config: { plugins: [], scheduler: { defaultPolicy: "load" } } });
    await hosts(deps, "load", [{ id: "load-1" }, { id: "load-2" }, { id: "load-3" }]);
    const report = async (loads: Record<string, number>) => {
      const inv = {
        type: "inventory" as const,
        site: "load",
        agentId: "a1",
        at: new Date().toISOString(),
        hosts: Object.entries(loads).map(([hostId, load]) => ({
          hostId,
          reachable: true,
          domains: [],
          load,
        })),
      };
      await handleReport(deps, await signReport(inv, "load", bed.agentSigner));
    };
    await report({ "load-1": 0.9, "load-2": 0.2, "load-3": 0.6 });
    expect((await start(deps, alice, { name: "ld-1", site: "load", ...small })).vm.hostId).toBe("load-2");
    await report({ "load-1": 0.9, "load-2": 0.95, "load-3": 0.1 });
    expect((await start(deps, alice, { name: "ld-2", site: "load", ...small })).vm.hostId).toBe("load-3");
  });
});

describe("dry run", () => {
  it("shows candidates with per-weigher scores, and a gang's outcome, claiming nothing", async () => {
    const deps = bed.deps({ config });
    await hosts(deps, "dry", [
      { id: "dry-1", vcpus: 4 },
      { id: "dry-2", vcpus: 8 },
    ]);
    const one = await schedulerDryRun(deps, alice, { site: "dry", vcpus: 2, memoryMiB: 512 });
    expect(one).toMatchObject({
      site: "dry",
      policy: "pack",
      considered: 2,
      rejections: {},
      message: null,
      gang: null,
    });
    expect(one.candidates.map((c) => c.hostId)).toEqual(["dry-1", "dry-2"]);
    expect(Object.keys(one.candidates[0]!.scores)).toEqual([
      "device_reserve",
      "fragmentation",
      "soft_affinity",
      "pack",
    ]);
    expect(one.candidates[0]!.score).toBeGreaterThan(one.candidates[1]!.score);
    // bob's project spreads.
    expect(
      (await schedulerDryRun(deps, bob, { site: "dry", vcpus: 2, memoryMiB: 512 })).candidates[0]?.hostId,
    ).toBe("dry-2");
    const gang = await schedulerDryRun(deps, alice, {
      site: "dry",
      count: 3,
      vcpus: 2,
      memoryMiB: 512,
      placement: { antiAffinityGroup: "g" },
    });
    expect(gang.gang).toMatchObject({
      placed: false,
      assignments: [
        { member: "node-1", hostId: null },
        { member: "node-2", hostId: null },
        { member: "node-3", hostId: null },
      ],
      failedMember: "node-3",
    });
    expect(gang.message).toMatch(
      /^no member would be placed, as member node-3 fits no host: .*anti_affinity rejected 2/,
    );
    // Member by member up to the one that found no host, each taking a host the next cannot share.
    expect(gang.gang?.steps.map((s) => [s.member, s.hostId, s.total])).toEqual([
      ["node-1", "dry-1", 2],
      ["node-2", "dry-2", 1],
      ["node-3", null, 0],
    ]);
    expect(gang.gang?.steps[2]).toMatchObject({ candidates: [], rejections: gang.rejections });
    const fits = await schedulerDryRun(deps, alice, {
      site: "dry",
      count: 2,
      vcpus: 4,
      memoryMiB: 512,
      policy: "spread",
    });
    expect(fits.policy).toBe("spread");
    expect(fits.gang?.assignments.map((a) => a.hostId).sort()).toEqual(["dry-1", "dry-2"]);

    // Three members spread by an anti-affinity group: the db (largest) first, each over the site as
    // the members before it left it.
    await hosts(deps, "dry", [{ id: "dry-3", vcpus: 6 }]);
    const spread = await schedulerDryRun(deps, alice, {
      site: "dry",
      members: [
        { role: "web", count: 2, vcpus: 1, memoryMiB: 512, placement: { antiAffinityGroup: "g" } },
        { role: "db", count: 1, vcpus: 2, memoryMiB: 1024, placement: { antiAffinityGroup: "g" } },
      ],
    });
    expect(spread.gang).toMatchObject({ placed: true, failedMember: null });
    expect(spread.candidates).toEqual([]);
    const steps = spread.gang!.steps;
    expect(steps.map((s) => s.member)).toEqual(["db-1", "web-1", "web-2"]);
    expect(steps.map((s) => s.candidates.map((c) => c.hostId))).toEqual([
      ["dry-1", "dry-3", "dry-2"],
      ["dry-3", "dry-2"],
      ["dry-2"],
    ]);
    expect(steps[1]!.candidates.map((c) => c.hostId)).not.toContain(steps[0]!.hostId);
    expect(steps[1]!.rejections).toEqual({
      anti_affinity: { count: 1, reason: "host holds a member of the VM's anti-affinity group" },
    });
    for (const s of steps) {
      expect(s.hostId).toBe(s.candidates[0]!.hostId);
      expect(s.total).toBe(s.candidates.length);
      const scores = s.candidates.map((c) => c.score);
      expect(scores).toEqual([...scores].sort((a, b) => b - a));
      for (const c of s.candidates)
        expect(Object.keys(c.scores)).toEqual(["device_reserve", "fragmentation", "soft_affinity", "pack"]);
    }
    // The first pick's pack score beats the others: best fit on the smallest host.
    expect(steps[0]!.candidates[0]!.scores.pack).toBeGreaterThan(steps[0]!.candidates[1]!.scores.pack!);
    expect(Object.fromEntries(spread.gang!.assignments.map((a) => [a.member, a.hostId]))).toEqual(
      Object.fromEntries(steps.map((s) => [s.member, s.hostId])),
    );

    // Nothing was claimed.
    for (const id of ["dry-1", "dry-2", "dry-3"]) expect((await getHost(deps, id)).allocated.vcpus).toBe(0);
  });
});
