import { describe, expect, it } from "vitest";
import { Snapshot } from "./snapshot.ts";
import { demand, host } from "./testing.ts";
import type { Demand, HostSnapshot } from "./types.ts";
import { WEIGHERS, type Weigher, type WeigherName } from "./weighers.ts";

/** Each host's score under `name` for `d` (checked against `add`), or "inactive". */
function scores(name: WeigherName, hosts: HostSnapshot[], d: Demand): Record<string, number> | "inactive" {
  const s = new Snapshot(hosts);
  const q = s.query.reset(s, d);
  const w: Weigher = WEIGHERS[name];
  if (!w.active(q, s)) return "inactive";
  const each = hosts.map((_, i) => w.score(s, i, q));
  const sums = new Float64Array(hosts.length);
  w.add(s, q, Int32Array.from(hosts.keys()), hosts.length, 2, sums);
  expect([...sums]).toEqual(each.map((v) => 2 * v));
  for (const v of each) expect(v).toBeGreaterThanOrEqual(0);
  for (const v of each) expect(v).toBeLessThanOrEqual(1);
  return Object.fromEntries(hosts.map((h, i) => [h.id, each[i]!]));
}

const order = (r: Record<string, number> | "inactive") =>
  r === "inactive" ? r : Object.keys(r).sort((a, b) => r[b]! - r[a]! || (a < b ? -1 : 1));

describe("weighers", () => {
  it("are registered under their own names", () => {
    for (const [key, w] of Object.entries(WEIGHERS)) expect(w.name).toBe(key);
  });

  const mixed = [
    host("empty"),
    host("half", { freeVcpus: 8, freeMemoryMiB: 8192 }),
    host("tight", { freeVcpus: 2, freeMemoryMiB: 2048 }),
  ];

  it("pack prefers the tightest fit", () => {
    expect(order(scores("pack", mixed, demand()))).toEqual(["tight", "half", "empty"]);
  });

  it("pack breaks into the fewest free devices on device hosts", () => {
    const gpu = [
      host("eight", { limitDevices: { a100: 8 }, freeDevices: { a100: 8 } }),
      host("one-left", { limitDevices: { a100: 8 }, freeDevices: { a100: 1 } }),
    ];
    expect(order(scores("pack", gpu, demand({ devices: { a100: 1 } })))).toEqual(["one-left", "eight"]);
  });

  it("spread prefers the least allocated", () => {
    expect(order(scores("spread", mixed, demand()))).toEqual(["empty", "half", "tight"]);
  });

  it("load prefers the least loaded, unknown load in the middle", () => {
    const hosts = [host("busy", { load: 0.9 }), host("idle", { load: 0.1 }), host("unknown")];
    expect(scores("load", hosts, demand())).toEqual({
      busy: expect.closeTo(0.1),
      idle: expect.closeTo(0.9),
      unknown: 0.5,
    });
  });

  it("power_saving prefers hosts already in use", () => {
    expect(scores("power_saving", mixed, demand())).toEqual({ empty: 0, half: 1, tight: 1 });
  });

  it("soft_affinity prefers hosts with members of the group, and is inactive without one", () => {
    const hosts = [host("a", { groups: ["web"] }), host("b")];
    expect(scores("soft_affinity", hosts, demand({ softAffinityGroup: "web" }))).toEqual({ a: 1, b: 0 });
    expect(scores("soft_affinity", hosts, demand({ softAffinityGroup: "db" }))).toBe("inactive");
  });

  it("device_reserve keeps device hosts for device demands", () => {
    const hosts = [host("gpu", { limitDevices: { t4: 2 }, freeDevices: { t4: 2 } }), host("cpu")];
    expect(scores("device_reserve", hosts, demand())).toEqual({ gpu: 0, cpu: 1 });
    expect(scores("device_reserve", hosts, demand({ devices: { t4: 1 } }))).toBe("inactive");
    expect(scores("device_reserve", [host("cpu")], demand())).toBe("inactive");
  });
});
