/**
 * Replays a trace through a placement strategy: arrivals and departures in time order (departures
 * first at equal times, so a leaving VM's room is there for the one arriving), each arrival placed
 * and applied to the snapshot, each departure released. An arrival no host can take is dropped and
 * the replay goes on; the first such arrival is "the first failure".
 */
import { Snapshot } from "../../shared/scheduler/pipeline.ts";
import type { Demand } from "../../shared/scheduler/types.ts";
import type { Trace } from "./trace.ts";

/** A way of choosing a host: a built-in policy through `placeOne`, or a baseline of the benchmark. */
export type Strategy = {
  name: string;
  choose(s: Snapshot, d: Demand): string | undefined;
};

/** Shares (0..1) of the site's capacity allocated, and how many hosts hold anything. */
export type Allocation = { hostsInUse: number; cpu: number; memory: number; gpu: number };

export type ReplayResult = {
  placedBeforeFailure: number;
  totalPlaced: number;
  failed: number;
  /** The site just before the first failure; undefined when every arrival was placed. */
  atFirstFailure: Allocation | undefined;
};

/** Reads the allocation off the snapshot's public columns. */
export function allocation(s: Snapshot): Allocation {
  let hostsInUse = 0;
  const used = [0, 0, 0];
  const limit = [0, 0, 0];
  for (let i = 0; i < s.size; i++) {
    if (!s.present[i]) continue;
    const u = [
      s.limitVcpus[i]! - s.freeVcpus[i]!,
      s.limitMemoryMiB[i]! - s.freeMemoryMiB[i]!,
      s.limitDevicesTotal[i]! - s.freeDevicesTotal[i]!,
    ];
    if (u.some((x) => x > 0)) hostsInUse++;
    u.forEach((x, k) => {
      used[k]! += x;
    });
    limit[0]! += s.limitVcpus[i]!;
    limit[1]! += s.limitMemoryMiB[i]!;
    limit[2]! += s.limitDevicesTotal[i]!;
  }
  const share = (k: number) => (limit[k]! > 0 ? used[k]! / limit[k]! : 0);
  return { hostsInUse, cpu: share(0), memory: share(1), gpu: share(2) };
}

/** Events as workload indexes: `i` arrives, `~i` (negative) departs, sorted by time. */
function events(trace: Trace): Int32Array {
  const w = trace.workloads;
  const out = new Int32Array(w.length * 2);
  for (let i = 0; i < w.length; i++) {
    out[2 * i] = i;
    out[2 * i + 1] = ~i;
  }
  const time = (e: number) => (e >= 0 ? w[e]!.arriveS : w[~e]!.departS);
  // Departures before arrivals at equal times, then by workload (arrival order).
  return out.sort(
    (a, b) => time(a) - time(b) || Number(a >= 0) - Number(b >= 0) || (a >= 0 ? a : ~a) - (b >= 0 ? b : ~b),
  );
}

export function replay(trace: Trace, strategy: Strategy): ReplayResult {
  const s = new Snapshot(trace.hosts);
  const hostOf: (string | undefined)[] = new Array(trace.workloads.length);
  const result: ReplayResult = {
    placedBeforeFailure: 0,
    totalPlaced: 0,
    failed: 0,
    atFirstFailure: undefined,
  };
  for (const e of events(trace)) {
    if (e < 0) {
      const at = hostOf[~e];
      if (at !== undefined) s.release(at, trace.workloads[~e]!.demand);
      hostOf[~e] = undefined;
      continue;
    }
    const d = trace.workloads[e]!.demand;
    const at = strategy.choose(s, d);
    if (at === undefined) {
      if (result.failed++ === 0) result.atFirstFailure = allocation(s);
      continue;
    }
    s.apply(at, d);
    hostOf[e] = at;
    result.totalPlaced++;
    if (result.failed === 0) result.placedBeforeFailure++;
  }
  return result;
}
