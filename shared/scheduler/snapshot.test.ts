import { describe, expect, it } from "vitest";
import { placeOne, Snapshot } from "./pipeline.ts";
import { resolvePolicy } from "./policy.ts";
import { demand, host } from "./testing.ts";

/** The index's order of one kind, as host ids. */
const order = (s: Snapshot, kind = "sim") => {
  const k = s.kindIndex(kind);
  return [...s.index.order[k]!.subarray(0, s.index.len[k])].map((i) => s.ids[i]);
};

describe("Snapshot", () => {
  it("indexes enabled hosts by free memory, per kind", () => {
    const s = new Snapshot([
      host("big"),
      host("small", { freeMemoryMiB: 1024 }),
      host("off", { state: "draining" }),
      host("k", { kind: "kvm" }),
    ]);
    expect(order(s)).toEqual(["small", "big"]);
    expect(order(s, "kvm")).toEqual(["k"]);
    expect([s.presentCount, s.enabledCount]).toEqual([4, 3]);
  });

  it("apply takes the amounts, records the VM and its groups, and moves the host in the index; release undoes it", () => {
    const hosts = [
      host("a", { freeMemoryMiB: 8192, limitDevices: { t4: 2 }, freeDevices: { t4: 2 } }),
      host("b", { freeMemoryMiB: 4096 }),
    ];
    const s = new Snapshot(hosts);
    const before = s.toHosts();
    const d = demand({ memoryMiB: 6144, devices: { t4: 1 }, vmId: "vm-1", antiAffinityGroup: "db" });
    s.apply("a", d);
    expect(s.toHosts()[0]).toMatchObject({
      freeVcpus: 14,
      freeMemoryMiB: 2048,
      freeDevices: { t4: 1 },
      vmIds: ["vm-1"],
      groups: ["db"],
    });
    expect(order(s)).toEqual(["a", "b"]);
    expect(s.members.vmHost.get("vm-1")).toBe(0);
    s.release("a", d);
    expect(s.toHosts()).toEqual(before);
    expect(order(s)).toEqual(["b", "a"]);
    expect(s.members.groupHosts.size).toBe(0);
  });

  it("refuses to apply what does not fit, or to release beyond the limits", () => {
    const s = new Snapshot([host("a", { freeVcpus: 1 })]);
    expect(() => s.apply("a", demand())).toThrow(/does not fit/);
    expect(() => s.apply("a", demand({ vcpus: 1, devices: { t4: 1 } }))).toThrow(/does not fit/);
    expect(() => s.apply("nope", demand())).toThrow(/unknown host/);
    expect(() => s.release("a", demand({ vcpus: 16 }))).toThrow(/exceeds the limits/);
  });

  it("upserts a fresh read (in place, or rebuilding for a new host or model) and removes hosts", () => {
    const s = new Snapshot([host("a"), host("b")]);
    s.upsert(host("a", { freeMemoryMiB: 1024 }));
    expect(order(s)).toEqual(["a", "b"]);
    s.upsert(host("b", { state: "disabled" }));
    expect(order(s)).toEqual(["a"]);
    expect(placeOne(s, demand(), resolvePolicy()).rejections).toMatchObject({
      host_state: { count: 1 },
      memory: { count: 1 },
    });
    s.upsert(host("c", { freeDevices: { a100: 1 }, vmIds: ["vm-9"] }));
    expect(s.toHosts().map((h) => h.id)).toEqual(["a", "b", "c"]);
    expect(placeOne(s, demand({ devices: { a100: 1 } }), resolvePolicy()).hostId).toBe("c");
    s.remove("c");
    expect(s.slot("c")).toBe(-1);
    expect(s.members.vmHost.has("vm-9")).toBe(false);
    expect(placeOne(s, demand(), resolvePolicy()).considered).toBe(2);
  });

  it("keeps a host's members across an upsert that carries none (a store read)", () => {
    const s = new Snapshot([host("a"), host("b")]);
    s.apply("a", demand({ vmId: "vm-1", antiAffinityGroup: "db" }));
    s.upsert(host("a", { freeVcpus: 10 }));
    expect(s.toHosts()[0]).toMatchObject({ freeVcpus: 10, vmIds: ["vm-1"], groups: ["db"] });
    expect(placeOne(s, demand({ antiAffinityGroup: "db" }), resolvePolicy()).hostId).toBe("b");
  });

  it("refuses duplicate ids", () => {
    expect(() => new Snapshot([host("a"), host("a")])).toThrow(/duplicate/);
  });
});
