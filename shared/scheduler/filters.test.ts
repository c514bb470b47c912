import { describe, expect, it } from "vitest";
import { FILTERS, type Filter, type FilterName } from "./filters.ts";
import { Snapshot } from "./snapshot.ts";
import { demand, host } from "./testing.ts";
import type { Demand, HostSnapshot } from "./types.ts";

/** The ids `name` accepts among `hosts` for `d`, checked through both `accepts` and `keep`. */
function accepted(name: FilterName, hosts: HostSnapshot[], d: Demand): string[] | "inactive" {
  const s = new Snapshot(hosts);
  const q = s.query.reset(s, d);
  const f: Filter = FILTERS[name];
  if (!f.active(q, s)) return "inactive";
  const one = hosts.map((_, i) => i).filter((i) => f.accepts(s, i, q));
  const slots = Int32Array.from(hosts.keys());
  const kept = f.keep(s, q, slots, slots.length);
  expect([...slots.subarray(0, kept)]).toEqual(one);
  return one.map((i) => hosts[i]!.id);
}

describe("filters", () => {
  it("are registered under their own names, each with a reason", () => {
    for (const [key, f] of Object.entries(FILTERS)) {
      expect(f.name).toBe(key);
      expect(f.reason).not.toBe("");
    }
  });

  it("host_state accepts enabled hosts only", () => {
    const hosts = [
      host("a"),
      host("b", { state: "disabled" }),
      host("c", { state: "draining" }),
      host("d", { state: "down" }),
    ];
    expect(accepted("host_state", hosts, demand())).toEqual(["a"]);
  });

  it("hypervisor accepts the kind asked for, is inactive when none is, and rejects all for an absent kind", () => {
    const hosts = [host("a", { kind: "kvm" }), host("b", { kind: "xen" })];
    expect(accepted("hypervisor", hosts, demand({ hypervisor: "xen" }))).toEqual(["b"]);
    expect(accepted("hypervisor", hosts, demand())).toBe("inactive");
    expect(accepted("hypervisor", hosts, demand({ hypervisor: "sim" }))).toEqual([]);
  });

  it("vcpus and memory compare free counters (ratios are in the limits), exact fits included", () => {
    const hosts = [
      host("a", { freeVcpus: 2, freeMemoryMiB: 2048 }),
      host("b", { freeVcpus: 1, freeMemoryMiB: 2047 }),
    ];
    expect(accepted("vcpus", hosts, demand())).toEqual(["a"]);
    expect(accepted("memory", hosts, demand())).toEqual(["a"]);
    // An overcommitted host (cpu ratio 4 on 4 cores) has 16 vCPUs to give.
    const over = [host("o", { limitVcpus: 16, freeVcpus: 16 })];
    expect(accepted("vcpus", over, demand({ vcpus: 16 }))).toEqual(["o"]);
  });

  it("devices asks for count and model; unknown models fit nowhere; no devices means inactive", () => {
    const hosts = [
      host("a", { freeDevices: { a100: 2 } }),
      host("b", { freeDevices: { a100: 1, t4: 4 } }),
      host("c", { freeDevices: { t4: 8 } }),
    ];
    expect(accepted("devices", hosts, demand({ devices: { a100: 2 } }))).toEqual(["a"]);
    expect(accepted("devices", hosts, demand({ devices: { a100: 1, t4: 1 } }))).toEqual(["b"]);
    expect(accepted("devices", hosts, demand({ devices: { h100: 1 } }))).toEqual([]);
    expect(accepted("devices", hosts, demand({ devices: { h100: 0 } }))).toBe("inactive");
  });

  it("labels must all match exactly", () => {
    const hosts = [
      host("a", { labels: { zone: "a", ssd: "yes" } }),
      host("b", { labels: { zone: "a" } }),
      host("c", { labels: { zone: "b", ssd: "yes" } }),
      host("d", { labels: undefined }),
    ];
    expect(accepted("labels", hosts, demand({ requiredLabels: { zone: "a", ssd: "yes" } }))).toEqual(["a"]);
    expect(accepted("labels", hosts, demand())).toBe("inactive");
  });

  it("affinity pins to the group's host once it has one; inactive for the first member", () => {
    const hosts = [host("a", { groups: ["web"] }), host("b")];
    expect(accepted("affinity", hosts, demand({ affinityGroup: "web" }))).toEqual(["a"]);
    expect(accepted("affinity", hosts, demand({ affinityGroup: "db" }))).toBe("inactive");
  });

  it("anti_affinity avoids every host holding a member", () => {
    const hosts = [host("a", { groups: ["db"] }), host("b", { groups: ["web"] }), host("c")];
    expect(accepted("anti_affinity", hosts, demand({ antiAffinityGroup: "db" }))).toEqual(["b", "c"]);
  });

  it("same_host wants the one host holding all the VMs named, and none when they are apart or unplaced", () => {
    const hosts = [host("a", { vmIds: ["vm-1", "vm-2"] }), host("b", { vmIds: ["vm-3"] })];
    expect(accepted("same_host", hosts, demand({ sameHostAs: ["vm-1", "vm-2"] }))).toEqual(["a"]);
    expect(accepted("same_host", hosts, demand({ sameHostAs: ["vm-1", "vm-3"] }))).toEqual([]);
    expect(accepted("same_host", hosts, demand({ sameHostAs: ["vm-9"] }))).toEqual([]);
    expect(accepted("same_host", hosts, demand({ sameHostAs: [] }))).toBe("inactive");
  });

  it("different_host avoids hosts holding any VM named, ignoring unplaced ones", () => {
    const hosts = [host("a", { vmIds: ["vm-1"] }), host("b", { vmIds: ["vm-3"] }), host("c")];
    expect(accepted("different_host", hosts, demand({ differentHostFrom: ["vm-1", "vm-3"] }))).toEqual(["c"]);
    expect(accepted("different_host", hosts, demand({ differentHostFrom: ["vm-9"] }))).toBe("inactive");
  });
});
