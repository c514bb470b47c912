import { describe, expect, it } from "vitest";
import { dryRun, explain, placeOne, Snapshot } from "./pipeline.ts";
import { ALL_FILTERS, POLICIES, type Policy, resolvePolicy } from "./policy.ts";
import { demand, host } from "./testing.ts";

const pack = resolvePolicy();
const gpuHost = (id: string, n = 4) => host(id, { limitDevices: { t4: n }, freeDevices: { t4: n } });

describe("placeOne", () => {
  it("places on the tightest fit and leaves the snapshot alone", () => {
    const s = new Snapshot([
      host("a"),
      host("b", { freeVcpus: 4, freeMemoryMiB: 4096 }),
      host("c", { freeVcpus: 8 }),
    ]);
    expect(placeOne(s, demand(), pack).hostId).toBe("b");
    expect(s.toHosts().find((h) => h.id === "b")?.freeVcpus).toBe(4);
  });

  it("keeps CPU-only VMs off GPU hosts while a CPU host fits, and spills over when none does", () => {
    const s = new Snapshot([gpuHost("gpu"), host("cpu", { freeVcpus: 2, freeMemoryMiB: 2048 })]);
    expect(placeOne(s, demand(), pack).hostId).toBe("cpu");
    s.apply("cpu", demand());
    expect(placeOne(s, demand(), pack).hostId).toBe("gpu");
    expect(placeOne(s, demand({ devices: { t4: 1 } }), pack).hostId).toBe("gpu");
  });

  it("counts each rejected host once, under the first filter it fails, and explains", () => {
    const s = new Snapshot([
      host("off", { state: "disabled", freeVcpus: 0 }),
      host("kvm", { kind: "kvm" }),
      host("small", { freeMemoryMiB: 1024 }),
      host("busy", { freeVcpus: 1 }),
      host("nogpu"),
      host("zone", { freeDevices: { t4: 1 }, labels: { zone: "b" } }),
    ]);
    const r = placeOne(
      s,
      demand({ hypervisor: "sim", devices: { t4: 1 }, requiredLabels: { zone: "a" } }),
      pack,
    );
    expect(r.hostId).toBeUndefined();
    expect(r.considered).toBe(6);
    expect(r.rejections).toEqual({
      host_state: { count: 1, reason: "host is not enabled" },
      hypervisor: { count: 1, reason: "host runs another hypervisor kind" },
      memory: { count: 1, reason: "not enough free memory" },
      vcpus: { count: 1, reason: "not enough free vCPUs" },
      devices: { count: 1, reason: "not enough free devices of the model asked for" },
      labels: { count: 1, reason: "host lacks a required label" },
    });
    expect(explain(r)).toBe(
      "no host fits among 6 considered: host_state rejected 1 (host is not enabled); " +
        "hypervisor rejected 1 (host runs another hypervisor kind); memory rejected 1 (not enough free memory); " +
        "vcpus rejected 1 (not enough free vCPUs); devices rejected 1 (not enough free devices of the model asked for); " +
        "labels rejected 1 (host lacks a required label)",
    );
  });

  it("says so when there are no hosts at all", () => {
    const r = placeOne(new Snapshot([]), demand(), pack);
    expect(r).toEqual({ hostId: undefined, rejections: {}, considered: 0 });
    expect(explain(r)).toBe("no host fits among 0 considered");
  });

  it("gives the same answer without the index (a policy that does not start with it)", () => {
    const hosts = [
      host("a", { freeMemoryMiB: 1000 }),
      host("b", { kind: "kvm" }),
      host("c", { freeVcpus: 3 }),
      host("d"),
    ];
    const scan: Policy = {
      filters: ["memory", "host_state", "hypervisor", "vcpus"],
      weighers: pack.weighers,
    };
    for (const d of [demand(), demand({ hypervisor: "sim" }), demand({ vcpus: 3 })])
      expect(placeOne(new Snapshot(hosts), d, scan)).toEqual(placeOne(new Snapshot(hosts), d, pack));
  });

  it("breaks ties by host id", () => {
    expect(placeOne(new Snapshot([host("z"), host("m"), host("q")]), demand(), pack).hostId).toBe("m");
  });

  it("refuses a policy naming a filter or weigher no registry holds", () => {
    const bad = { filters: ["nope"], weighers: [] } as unknown as Policy;
    expect(() => placeOne(new Snapshot([host("a")]), demand(), bad)).toThrow(/unknown filter nope/);
    const worse = { filters: [], weighers: [{ name: "nope", weight: 1 }] } as unknown as Policy;
    expect(() => placeOne(new Snapshot([host("a")]), demand(), worse)).toThrow(/unknown weigher nope/);
  });
});

describe("policies", () => {
  const hosts = [
    host("empty", { load: 0.9 }),
    host("used", { freeVcpus: 8, freeMemoryMiB: 8192, load: 0.1 }),
  ];

  it("resolve by name, pack by default, each with every filter", () => {
    expect(resolvePolicy()).toBe(POLICIES.pack);
    for (const p of Object.values(POLICIES)) expect(p.filters).toEqual(ALL_FILTERS);
  });

  it("choose differently on the same hosts", () => {
    const pick = (name: keyof typeof POLICIES, hs = hosts) =>
      placeOne(new Snapshot(hs), demand(), resolvePolicy(name)).hostId;
    expect(pick("pack")).toBe("used");
    expect(pick("spread")).toBe("empty");
    expect(pick("load")).toBe("used");
    // Power saving fills a host in use even when an idle one would be a tighter fit.
    const idle = [
      host("idle", { limitVcpus: 2, freeVcpus: 2, limitMemoryMiB: 2048, freeMemoryMiB: 2048 }),
      host("used", { freeVcpus: 15 }),
    ];
    expect(pick("pack", idle)).toBe("idle");
    expect(pick("power-saving", idle)).toBe("used");
  });

  it("let soft affinity outrank the fit, and device reservation outrank soft affinity", () => {
    const s = new Snapshot([
      host("tight", { freeVcpus: 2, freeMemoryMiB: 2048 }),
      host("friend", { groups: ["web"] }),
      { ...gpuHost("gpu-friend"), groups: ["web"] },
    ]);
    expect(placeOne(s, demand({ softAffinityGroup: "web" }), pack).hostId).toBe("friend");
    expect(placeOne(s, demand({ softAffinityGroup: "web", devices: { t4: 1 } }), pack).hostId).toBe(
      "gpu-friend",
    );
  });
});

describe("dryRun", () => {
  it("lists every candidate, best first, with each weigher's score, and the rejections", () => {
    const s = new Snapshot([
      host("a"),
      host("b", { freeVcpus: 4, freeMemoryMiB: 4096 }),
      host("off", { state: "down" }),
      gpuHost("g"),
    ]);
    const r = dryRun(s, demand(), pack);
    expect(r.candidates.map((c) => c.hostId)).toEqual(["b", "a", "g"]);
    expect(r.candidates[0]).toEqual({
      hostId: "b",
      score: expect.closeTo(16 + 8 + 0.875),
      scores: { device_reserve: 1, fragmentation: 1, soft_affinity: 0, pack: expect.closeTo(0.875) },
    });
    expect(r.rejections).toEqual({ host_state: { count: 1, reason: "host is not enabled" } });
    expect(r.considered).toBe(4);
    expect(placeOne(s, demand(), pack).hostId).toBe(r.candidates[0]?.hostId);
  });
});
