import { describe, expect, it } from "vitest";
import { CpuTimeLoad } from "./load.ts";
import type { XlListRow } from "./parse.ts";

const row = (domid: number, cpuSeconds: number): XlListRow => ({
  name: domid === 0 ? "Domain-0" : `d${domid}`,
  domid,
  memoryMiB: 512,
  vcpus: 1,
  flags: "-b----",
  cpuSeconds,
});

describe("CpuTimeLoad", () => {
  it("has no load until it has two readings, then CPU time over wall time and CPUs", () => {
    const m = new CpuTimeLoad();
    expect(m.sample([row(0, 100), row(1, 10)], 4, 0)).toBeUndefined();
    // 10 s later: dom0 used 2 s, d1 used 6 s → 8 s of 40 CPU-seconds.
    expect(m.sample([row(0, 102), row(1, 16)], 4, 10_000)).toBeCloseTo(0.2);
  });

  it("counts a new domain's whole time, nothing for one that went, and a reused id afresh", () => {
    const m = new CpuTimeLoad();
    m.sample([row(0, 50), row(1, 30), row(2, 40)], 2, 0);
    // d1 gone; d3 new with 1 s; d2's id reused by a domain that has run 2 s (less than the old 40).
    expect(m.sample([row(0, 51), row(2, 2), row(3, 1)], 2, 2_000)).toBeCloseTo((1 + 2 + 1) / 4);
  });

  it("gives nothing when no time passed or the CPU count is not known", () => {
    const m = new CpuTimeLoad();
    m.sample([row(0, 1)], 2, 1_000);
    expect(m.sample([row(0, 2)], 2, 1_000)).toBeUndefined();
    expect(m.sample([row(0, 3)], 0, 2_000)).toBeUndefined();
  });
});
