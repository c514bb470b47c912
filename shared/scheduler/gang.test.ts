import { describe, expect, it } from "vitest";
import { placeGang } from "./gang.ts";
import { Snapshot } from "./pipeline.ts";
import { resolvePolicy } from "./policy.ts";
import { demand, host } from "./testing.ts";

const pack = resolvePolicy();

describe("placeGang", () => {
  it("places every member, largest first, and records them", () => {
    const s = new Snapshot([host("a", { freeVcpus: 8 }), host("b")]);
    const r = placeGang(s, [demand({ vcpus: 2, vmId: "small" }), demand({ vcpus: 8, vmId: "big" })], pack);
    // The big one goes first and takes the tight host; the small one then fits best on what is left of b.
    expect(r).toEqual({ assignments: ["b", "a"] });
    expect(s.members.vmHost.get("big")).toBe(s.slot("a"));
  });

  it("spreads members sharing an anti-affinity group", () => {
    const s = new Snapshot([host("a"), host("b"), host("c")]);
    const members = ["m1", "m2", "m3"].map((vmId) => demand({ vmId, antiAffinityGroup: "cl-1" }));
    const r = placeGang(s, members, pack);
    expect("assignments" in r && new Set(r.assignments).size).toBe(3);
  });

  it("keeps an affinity group on one host chosen to fit all of it", () => {
    // Best fit alone would put the first member on the tight host, where the second cannot follow.
    const s = new Snapshot([host("tight", { freeVcpus: 4 }), host("roomy")]);
    const members = [demand({ vcpus: 4, affinityGroup: "g" }), demand({ vcpus: 4, affinityGroup: "g" })];
    expect(placeGang(s, members, pack)).toEqual({ assignments: ["roomy", "roomy"] });
  });

  it("places all or none: a failure leaves the snapshot as it was and names the member", () => {
    const s = new Snapshot([host("a"), host("b")]);
    const before = s.toHosts();
    const members = ["m1", "m2", "m3"].map((vmId) => demand({ vmId, antiAffinityGroup: "cl-1" }));
    const r = placeGang(s, members, pack);
    expect(r).toEqual({
      failed: 2,
      considered: 2,
      rejections: {
        anti_affinity: { count: 2, reason: "host holds a member of the VM's anti-affinity group" },
      },
    });
    expect(s.toHosts()).toEqual(before);
    expect(s.members.groupHosts.size).toBe(0);
    expect(s.members.vmHost.size).toBe(0);
  });

  it("places device members first, so they are not crowded out", () => {
    const s = new Snapshot([host("gpu", { limitDevices: { t4: 1 }, freeDevices: { t4: 1 }, freeVcpus: 4 })]);
    const r = placeGang(s, [demand({ vcpus: 2 }), demand({ vcpus: 2, devices: { t4: 1 } })], pack);
    expect(r).toEqual({ assignments: ["gpu", "gpu"] });
  });
});
