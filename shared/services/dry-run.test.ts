import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GANG_STEP_CANDIDATES } from "../contracts/scheduler.ts";
import { placeGang } from "../scheduler/gang.ts";
import { Snapshot } from "../scheduler/pipeline.ts";
import { resolvePolicy } from "../scheduler/policy.ts";
import { demand, host } from "../scheduler/testing.ts";
import type { Demand } from "../scheduler/types.ts";
import { gangSteps } from "./dry-run.ts";

const pack = resolvePolicy();
const namesOf = (demands: readonly Demand[]) => demands.map((_, i) => `m-${i + 1}`);

describe("gangSteps", () => {
  it("shows each member's candidates, largest first, over the site as the gang fills it", () => {
    const s = new Snapshot([host("a", { freeVcpus: 6 }), host("b", { freeVcpus: 10 }), host("c")]);
    const before = s.toHosts();
    const members = [
      demand({ vcpus: 1, antiAffinityGroup: "g" }),
      demand({ vcpus: 4, antiAffinityGroup: "g" }),
      demand({ vcpus: 2, antiAffinityGroup: "g" }),
    ];
    const steps = gangSteps(s, members, namesOf(members), pack);
    expect(steps.map((x) => x.member)).toEqual(["m-2", "m-3", "m-1"]);
    // Best fit: the 4-vCPU member takes the tightest host, and the anti-affinity group keeps it from the others.
    expect(steps.map((x) => x.hostId)).toEqual(["a", "b", "c"]);
    expect(steps.map((x) => x.candidates.map((c) => c.hostId))).toEqual([["a", "b", "c"], ["b", "c"], ["c"]]);
    expect(steps[1]!.rejections).toEqual({
      anti_affinity: { count: 1, reason: "host holds a member of the VM's anti-affinity group" },
    });
    for (const step of steps) {
      expect(step.total).toBe(step.candidates.length);
      const scores = step.candidates.map((c) => c.score);
      expect(scores).toEqual([...scores].sort((x, y) => y - x));
      expect(Object.keys(step.candidates[0]!.scores)).toEqual([
        "device_reserve",
        "fragmentation",
        "soft_affinity",
        "pack",
      ]);
    }
    // Pure: the snapshot is as it was, and the gang decides the same on it.
    expect(s.toHosts()).toEqual(before);
    expect(s.members.groupHosts.size).toBe(0);
    expect(placeGang(s, members, pack)).toEqual({ assignments: ["c", "a", "b"] });
  });

  it("stops at the member that finds no host, with its rejections", () => {
    const s = new Snapshot([host("a"), host("b")]);
    const members = [1, 2, 3].map(() => demand({ antiAffinityGroup: "g" }));
    const steps = gangSteps(s, members, namesOf(members), pack);
    expect(steps.map((x) => [x.member, x.hostId, x.total])).toEqual([
      ["m-1", "a", 2],
      ["m-2", "b", 1],
      ["m-3", null, 0],
    ]);
    expect(steps[2]).toMatchObject({ candidates: [], rejections: { anti_affinity: { count: 2 } } });
    expect(s.members.groupHosts.size).toBe(0);
  });

  it("weighs an affinity group's first member with the whole group's amounts, as the gang does", () => {
    const s = new Snapshot([host("tight", { freeVcpus: 4 }), host("roomy")]);
    const members = [demand({ vcpus: 4, affinityGroup: "g" }), demand({ vcpus: 4, affinityGroup: "g" })];
    const steps = gangSteps(s, members, namesOf(members), pack);
    expect(steps.map((x) => x.hostId)).toEqual(["roomy", "roomy"]);
    expect(steps[0]!.rejections).toMatchObject({ vcpus: { count: 1 } });
  });

  it(`lists at most ${GANG_STEP_CANDIDATES} candidates a member, with the count of all`, () => {
    const s = new Snapshot(Array.from({ length: 30 }, (_, i) => host(`h-${String(i).padStart(2, "0")}`)));
    const [step] = gangSteps(s, [demand()], ["m-1"], pack);
    expect(step!.total).toBe(30);
    expect(step!.candidates).toHaveLength(GANG_STEP_CANDIDATES);
  });

  it("takes the hosts placeGang takes, and fails where it fails", () => {
    const hostArb = fc.record({
      freeVcpus: fc.integer({ min: 0, max: 16 }),
      freeMemoryMiB: fc.integer({ min: 0, max: 16384 }),
      t4: fc.integer({ min: 0, max: 2 }),
    });
    const demandArb = fc.record({
      // Few sizes, so members often tie and their order matters.
      vcpus: fc.constantFrom(1, 2, 4),
      memoryMiB: fc.constantFrom(512, 4096),
      t4: fc.integer({ min: 0, max: 1 }),
      group: fc.constantFrom("none", "anti", "affinity"),
    });
    fc.assert(
      fc.property(
        fc.array(hostArb, { minLength: 1, maxLength: 6 }),
        fc.array(demandArb, { minLength: 1, maxLength: 6 }),
        fc.constantFrom("pack", "spread") as fc.Arbitrary<"pack" | "spread">,
        (hosts, raw, name) => {
          const s = new Snapshot(
            hosts.map((h, i) =>
              host(`h-${i}`, {
                freeVcpus: h.freeVcpus,
                freeMemoryMiB: h.freeMemoryMiB,
                limitDevices: { t4: 2 },
                freeDevices: { t4: h.t4 },
              }),
            ),
          );
          const members = raw.map((d) =>
            demand({
              vcpus: d.vcpus,
              memoryMiB: d.memoryMiB,
              devices: d.t4 ? { t4: d.t4 } : {},
              ...(d.group === "anti" ? { antiAffinityGroup: "g" } : {}),
              ...(d.group === "affinity" ? { affinityGroup: "h" } : {}),
            }),
          );
          const names = namesOf(members);
          const policy = resolvePolicy(name);
          const steps = gangSteps(s, members, names, policy);
          const r = placeGang(s, members, policy);
          if ("assignments" in r) {
            expect(steps).toHaveLength(members.length);
            for (const step of steps) expect(step.hostId).toBe(r.assignments[names.indexOf(step.member)]);
          } else {
            expect(steps.at(-1)).toMatchObject({
              member: names[r.failed],
              hostId: null,
              rejections: r.rejections,
            });
            expect(steps.slice(0, -1).every((x) => x.hostId !== null)).toBe(true);
          }
        },
      ),
    );
  });
});
