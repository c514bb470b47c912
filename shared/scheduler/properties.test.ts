/**
 * Properties over random hosts and random demand sequences: no limit is ever exceeded, hard group
 * constraints hold, gangs are all or none, the index agrees with a plain scan, and the rejections
 * always add up.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { placeGang } from "./gang.ts";
import { dryRun, placeOne, Snapshot } from "./pipeline.ts";
import { POLICY_NAMES, type PolicyName, resolvePolicy } from "./policy.ts";
import type { Demand, HostSnapshot } from "./types.ts";

const MODELS = ["a100", "t4"];

const hostArb = fc
  .record({
    kind: fc.constantFrom("kvm" as const, "sim" as const),
    state: fc.constantFrom(
      "enabled" as const,
      "enabled" as const,
      "enabled" as const,
      "disabled" as const,
      "draining" as const,
      "drained" as const,
      "down" as const,
      "fencing" as const,
      "fenced" as const,
    ),
    limitVcpus: fc.integer({ min: 1, max: 32 }),
    limitMemoryMiB: fc.integer({ min: 256, max: 32768 }),
    usedShare: fc.double({ min: 0, max: 0.9, noNaN: true }),
    model: fc.option(fc.constantFrom(...MODELS)),
    devices: fc.integer({ min: 1, max: 8 }),
    zone: fc.constantFrom("a", "b"),
    load: fc.option(fc.double({ min: 0, max: 1, noNaN: true })),
  })
  .map((h) => {
    const dev = h.model ? { [h.model]: h.devices } : {};
    return {
      id: "",
      kind: h.kind,
      state: h.state,
      labels: { zone: h.zone },
      limitVcpus: h.limitVcpus,
      limitMemoryMiB: h.limitMemoryMiB,
      limitDevices: dev,
      freeVcpus: Math.floor(h.limitVcpus * (1 - h.usedShare)),
      freeMemoryMiB: Math.floor(h.limitMemoryMiB * (1 - h.usedShare)),
      freeDevices: { ...dev },
      ...(h.load === null ? {} : { load: h.load }),
    } satisfies HostSnapshot;
  });

const hostsArb = fc
  .array(hostArb, { minLength: 1, maxLength: 16, size: "max" })
  .map((hs) => hs.map((h, i) => ({ ...h, id: `h${i}` })));

/** `arb` one time in `every`, null otherwise. */
const sometimes = <T>(arb: fc.Arbitrary<T>, every: number) =>
  fc.oneof({ arbitrary: fc.constant(null), weight: every - 1 }, { arbitrary: arb, weight: 1 });

const demandArb = fc
  .record({
    vcpus: fc.integer({ min: 1, max: 6 }),
    memoryMiB: fc.integer({ min: 16, max: 6000 }),
    gpu: sometimes(
      fc.record({ model: fc.constantFrom(...MODELS, "h100"), n: fc.integer({ min: 1, max: 4 }) }),
      4,
    ),
    hypervisor: sometimes(fc.constantFrom("kvm" as const, "sim" as const, "xen" as const), 4),
    zone: sometimes(fc.constantFrom("a", "b"), 3),
    // Disjoint pools, so each group has one relation: anti "x*", hard "a*", soft "s*".
    anti: sometimes(fc.constantFrom("x0", "x1"), 3),
    affinity: sometimes(fc.constantFrom("a0", "a1"), 3),
    soft: sometimes(fc.constantFrom("s0", "s1"), 3),
    apart: fc.array(fc.integer({ min: 0, max: 30 }), { maxLength: 2 }),
    with: sometimes(fc.integer({ min: 0, max: 30 }), 6),
  })
  .map(
    (d): Demand => ({
      vcpus: d.vcpus,
      memoryMiB: d.memoryMiB,
      devices: d.gpu ? { [d.gpu.model]: d.gpu.n } : {},
      hypervisor: d.hypervisor ?? undefined,
      requiredLabels: d.zone ? { zone: d.zone } : undefined,
      antiAffinityGroup: d.anti ?? undefined,
      affinityGroup: d.affinity ?? undefined,
      softAffinityGroup: d.soft ?? undefined,
      differentHostFrom: d.apart.map((n) => `vm-${n}`),
      sameHostAs: d.with === null ? undefined : [`vm-${d.with}`],
    }),
  );

const policyArb = fc.constantFrom<PolicyName>(...POLICY_NAMES);
const sum = (r: Record<string, { count: number }>) => Object.values(r).reduce((a, x) => a + x.count, 0);

/** Every free counter equals its start minus what was applied there, and stays within 0..limit. */
function checkCounters(start: HostSnapshot[], s: Snapshot, placed: [string, Demand][]) {
  const now = new Map(s.toHosts().map((h) => [h.id, h]));
  for (const h of start) {
    const mine = placed.filter(([id]) => id === h.id).map(([, d]) => d);
    const after = now.get(h.id)!;
    expect(after.freeVcpus).toBe(h.freeVcpus - mine.reduce((a, d) => a + d.vcpus, 0));
    expect(after.freeMemoryMiB).toBe(h.freeMemoryMiB - mine.reduce((a, d) => a + d.memoryMiB, 0));
    expect(after.freeVcpus).toBeGreaterThanOrEqual(0);
    expect(after.freeMemoryMiB).toBeGreaterThanOrEqual(0);
    for (const model of MODELS) {
      const used = mine.reduce((a, d) => a + (d.devices[model] ?? 0), 0);
      expect(after.freeDevices[model] ?? 0).toBe((h.freeDevices[model] ?? 0) - used);
      expect(after.freeDevices[model] ?? 0).toBeGreaterThanOrEqual(0);
    }
  }
}

/** The index holds exactly the enabled hosts of each kind, sorted by free memory. */
function checkIndex(s: Snapshot) {
  for (let k = 0; k < s.index.order.length; k++) {
    const slots = [...s.index.order[k]!.subarray(0, s.index.len[k])];
    for (let p = 1; p < slots.length; p++)
      expect(s.freeMemoryMiB[slots[p - 1]!]).toBeLessThanOrEqual(s.freeMemoryMiB[slots[p]!]!);
    const expected = [...s.ids.keys()].filter((i) => s.present[i] && s.enabled[i] && s.kind[i] === k);
    expect(slots.sort((a, b) => a - b)).toEqual(expected);
  }
}

describe("placement properties", () => {
  it("a sequence of placements never exceeds a limit and holds every hard constraint", () => {
    fc.assert(
      fc.property(
        hostsArb,
        fc.array(demandArb, { minLength: 5, maxLength: 40 }),
        policyArb,
        (hosts, demands, name) => {
          const s = new Snapshot(hosts);
          const policy = resolvePolicy(name);
          const placed: [string, Demand][] = [];
          demands.forEach((raw, n) => {
            const d = { ...raw, vmId: `vm-${n}` };
            const r = placeOne(s, d, policy);
            const dry = dryRun(s, d, policy);
            // The index and the plain scan agree on the host and on every count.
            expect(r.hostId).toBe(dry.candidates[0]?.hostId);
            expect(r.rejections).toEqual(dry.rejections);
            expect(sum(r.rejections) + dry.candidates.length).toBe(r.considered);
            if (r.hostId === undefined) {
              expect(sum(r.rejections)).toBe(r.considered);
              return;
            }
            const slot = s.slot(r.hostId);
            // Only an enabled host takes a placement: never one draining, down or fenced.
            expect(hosts.find((h) => h.id === r.hostId)?.state).toBe("enabled");
            for (const other of d.differentHostFrom ?? []) expect(s.members.vmHost.get(other)).not.toBe(slot);
            for (const other of d.sameHostAs ?? []) expect(s.members.vmHost.get(other)).toBe(slot);
            s.apply(r.hostId, d);
            placed.push([r.hostId, d]);
          });
          checkCounters(hosts, s, placed);
          checkIndex(s);
          for (const group of ["x0", "x1"]) {
            const where = placed.filter(([, d]) => d.antiAffinityGroup === group).map(([h]) => h);
            expect(new Set(where).size).toBe(where.length);
          }
          for (const group of ["a0", "a1"]) {
            const where = placed.filter(([, d]) => d.affinityGroup === group).map(([h]) => h);
            expect(new Set(where).size).toBeLessThanOrEqual(1);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("releasing everything placed, in any order, restores the snapshot; upserts and removals keep the index sound", () => {
    fc.assert(
      fc.property(
        hostsArb,
        fc.array(demandArb, { maxLength: 20 }),
        fc.integer(),
        hostArb,
        (hosts, demands, seed, fresh) => {
          const s = new Snapshot(hosts);
          const before = s.toHosts();
          const placed: [string, Demand][] = [];
          demands.forEach((raw, n) => {
            const d = { ...raw, vmId: `vm-${n}` };
            const r = placeOne(s, d, resolvePolicy());
            if (r.hostId) s.apply(r.hostId, d);
            if (r.hostId) placed.push([r.hostId, d]);
          });
          checkIndex(s);
          const shuffled = fc.sample(fc.shuffledSubarray(placed, { minLength: placed.length }), {
            numRuns: 1,
            seed,
          })[0]!;
          for (const [h, d] of shuffled) s.release(h, d);
          expect(
            s.toHosts().map(({ vmIds, groups, ...h }) => ({
              ...h,
              vmIds: [...vmIds!].sort(),
              groups: [...groups!].sort(),
            })),
          ).toEqual(before);
          checkIndex(s);
          if (hosts.length === 0) return;
          s.upsert({ ...fresh, id: hosts[Math.abs(seed) % hosts.length]!.id });
          checkIndex(s);
          s.remove(hosts[0]!.id);
          checkIndex(s);
          expect(
            placeOne(s, demands[0] ?? { vcpus: 1, memoryMiB: 16, devices: {} }, resolvePolicy()).considered,
          ).toBe(hosts.length - 1);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("a gang is all or none: on failure the snapshot is unchanged, on success every member fits and anti-affinity holds", () => {
    fc.assert(
      fc.property(
        hostsArb,
        fc.array(demandArb, { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        policyArb,
        (hosts, raw, spread, name) => {
          const s = new Snapshot(hosts);
          const before = s.toHosts();
          const members = raw.map((d, n) => ({
            ...d,
            vmId: `m-${n}`,
            sameHostAs: undefined,
            differentHostFrom: undefined,
            ...(spread ? { antiAffinityGroup: "gang", affinityGroup: undefined } : {}),
          }));
          const r = placeGang(s, members, resolvePolicy(name));
          if ("failed" in r) {
            expect(s.toHosts()).toEqual(before);
            expect(sum(r.rejections)).toBe(r.considered);
            return;
          }
          expect(r.assignments).toHaveLength(members.length);
          checkCounters(
            hosts,
            s,
            r.assignments.map((h, n) => [h, members[n]!]),
          );
          if (spread) expect(new Set(r.assignments).size).toBe(members.length);
          for (const group of ["a0", "a1"]) {
            const where = r.assignments.filter((_, n) => members[n]!.affinityGroup === group);
            expect(new Set(where).size).toBeLessThanOrEqual(1);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("a gang sharing an anti-affinity group places iff enough hosts fit one member and hold none of the group", () => {
    fc.assert(
      fc.property(
        hostsArb,
        demandArb,
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.nat(), { maxLength: 3 }),
        policyArb,
        (hosts, raw, n, taken, name) => {
          // Some hosts already hold members of the group (placed earlier, outside this gang).
          const held = new Set(taken.map((t) => hosts[t % hosts.length]!.id));
          const s = new Snapshot(hosts.map((h) => (held.has(h.id) ? { ...h, groups: ["gang"] } : h)));
          const one: Demand = {
            ...raw,
            antiAffinityGroup: "gang",
            affinityGroup: undefined,
            softAffinityGroup: undefined,
            sameHostAs: undefined,
            differentHostFrom: undefined,
          };
          const room = hosts.filter(
            (h) => !held.has(h.id) && placeOne(new Snapshot([h]), one, resolvePolicy()).hostId,
          );
          const members = Array.from({ length: n }, (_, i) => ({ ...one, vmId: `g-${i}` }));
          const r = placeGang(s, members, resolvePolicy(name));
          if (n > room.length) {
            expect(r).toHaveProperty("failed");
            return;
          }
          expect(r).toHaveProperty("assignments");
          const where = "assignments" in r ? r.assignments : [];
          expect(new Set(where).size).toBe(n);
          for (const h of where) expect(held.has(h)).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });
});
