import { describe, expect, it } from "vitest";
import { type Demand, explain, type HostSnapshot, rank } from "./placement.ts";

const host = (id: string, free: Partial<HostSnapshot> = {}): HostSnapshot => ({
  id,
  kind: "sim",
  state: "enabled",
  limitVcpus: 16,
  limitMemoryMiB: 16384,
  freeVcpus: 16,
  freeMemoryMiB: 16384,
  freeDevices: {},
  ...free,
});
const demand = (d: Partial<Demand> = {}): Demand => ({ vcpus: 2, memoryMiB: 2048, devices: {}, ...d });

describe("rank", () => {
  it("prefers the tightest fit (pack)", () => {
    const p = rank(
      [host("a"), host("b", { freeVcpus: 4, freeMemoryMiB: 4096 }), host("c", { freeVcpus: 8 })],
      demand(),
    );
    expect(p.candidates.map((h) => h.id)).toEqual(["b", "c", "a"]);
  });

  it("counts rejections per filter and explains them", () => {
    const p = rank(
      [
        host("a", { freeVcpus: 1 }),
        host("b", { freeMemoryMiB: 100 }),
        host("c", { state: "disabled" }),
        host("d", { kind: "kvm" }),
        host("e", { freeDevices: { a100: 1 } }),
      ],
      demand({ hypervisor: "sim", devices: { a100: 2 } }),
    );
    expect(p.candidates).toEqual([]);
    expect(p.rejections).toMatchObject({
      vcpus: { count: 1 },
      memory: { count: 1 },
      host_state: { count: 1 },
      hypervisor: { count: 1 },
      devices: { count: 1 },
    });
    expect(explain(p)).toMatch(/no host fits among 5 considered: .*vcpus rejected 1/);
  });

  it("accepts exact fits and honours exclusions", () => {
    const p = rank([host("a", { freeVcpus: 2, freeMemoryMiB: 2048 }), host("b")], demand(), new Set(["b"]));
    expect(p.candidates.map((h) => h.id)).toEqual(["a"]);
  });
});
