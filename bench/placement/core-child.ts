/**
 * Section 1's measurement for one site size, run in its own process (`bench/lib/child.ts`): the
 * snapshot's heap, then the default policy's decisions against the naive scan, in alternating runs
 * on the same demand stream, once both sites hold the same steady-state load.
 */
import { placeOne, Snapshot } from "../../shared/scheduler/pipeline.ts";
import { resolvePolicy } from "../../shared/scheduler/policy.ts";
import type { Demand, HostSnapshot } from "../../shared/scheduler/types.ts";
import { childMain, heapAfterGc } from "../lib/child.ts";
import { random } from "../lib/random.ts";
import { quantile } from "../lib/stats.ts";
import { demandStream, generateHosts } from "./cluster.ts";
import { NaiveSite } from "./naive.ts";

export type CoreInput = {
  hosts: number;
  runs: number;
  /** Each run places for about this long (after the warm-up), at least `minDecisions` times. */
  runMs: number;
  warmupMs: number;
};

export type CoreSamples = { rate: number[]; p50Us: number[]; p99Us: number[] };

export type CoreOutput = {
  pipeline: CoreSamples;
  naive: CoreSamples;
  /** Heap held by the snapshot, in bytes: as loaded, and holding `vms` VMs; one sample per build. */
  heapEmpty: number[];
  heapLoaded: number[];
  vms: number;
  /** Share of the enabled hosts' memory allocated at steady state. */
  memoryShare: number;
};

const MIN_DECISIONS = 200;
/** The steady state the timings run at: this share of the enabled hosts' memory allocated. */
const FILL = 0.7;

/** What both contenders offer: choose a host (undefined: none), record, undo. */
type Site<H> = {
  place(d: Demand): H | undefined;
  apply(h: H, d: Demand): void;
  release(h: H, d: Demand): void;
};

type Placed<H> = { h: H; d: Demand };

function pipelineSite(s: Snapshot): Site<string> {
  const policy = resolvePolicy();
  return {
    place: (d) => placeOne(s, d, policy).hostId,
    apply: (h, d) => s.apply(h, d),
    release: (h, d) => s.release(h, d),
  };
}

function naiveSite(n: NaiveSite): Site<number> {
  return {
    place: (d) => {
      const i = n.place(d);
      return i < 0 ? undefined : i;
    },
    apply: (i, d) => n.apply(i, d),
    release: (i, d) => n.release(i, d),
  };
}

/** Places from `next` until `FILL` of the enabled memory is allocated (or placement keeps failing). */
function fill(hosts: readonly HostSnapshot[]): Placed<string>[] {
  const site = pipelineSite(new Snapshot(hosts));
  const next = demandStream(hosts.length);
  const placed: Placed<string>[] = [];
  let allocated = 0;
  for (let misses = 0; allocated < FILL * enabledMemory(hosts) && misses < 200; ) {
    const d = next();
    const h = site.place(d);
    if (h === undefined) {
      misses++;
      continue;
    }
    misses = 0;
    site.apply(h, d);
    placed.push({ h, d });
    allocated += d.memoryMiB;
  }
  return placed;
}

function enabledMemory(hosts: readonly HostSnapshot[]): number {
  return hosts.reduce((a, h) => a + (h.state === "enabled" ? h.limitMemoryMiB : 0), 0);
}

/** Hosts past this many are copies of the first `TILE`, so that filling a large site stays quick. */
const TILE = 1000;

/** The site's hosts: generated up to `TILE`, then that many again with new ids, copy after copy. */
function siteHosts(n: number): HostSnapshot[] {
  const tile = generateHosts(Math.min(n, TILE));
  return Array.from({ length: n }, (_, i) => ({ ...tile[i % TILE]!, id: hostId(i) }));
}

function hostId(i: number): string {
  return `host-${String(i).padStart(5, "0")}`;
}

/**
 * The site's hosts and the VMs on them at steady state, as the default policy placed them. Past
 * `TILE` hosts the first tile is filled by the policy and its placements copied onto every other
 * tile, groups renamed so that each tile has its own (the demand stream names `hosts / 10` groups):
 * filling 10,000 hosts decision by decision takes longer than the whole measurement.
 */
function loadedSite(n: number): { hosts: HostSnapshot[]; placed: Placed<string>[] } {
  const hosts = siteHosts(n);
  const base = fill(hosts.slice(0, Math.min(n, TILE)));
  const placed: Placed<string>[] = [];
  const groups = Math.max(4, Math.floor(TILE / 10));
  const rename = (g: string | undefined, copy: number) =>
    g?.replace(/\d+$/, (k) => String(Number(k) + copy * groups));
  for (let copy = 0; copy * TILE < n; copy++) {
    for (const { h, d } of base) {
      const i = Number(h.slice("host-".length)) + copy * TILE;
      if (i >= n) continue;
      placed.push({
        h: hostId(i),
        d: {
          ...d,
          vmId: `${d.vmId}-${copy}`,
          antiAffinityGroup: rename(d.antiAffinityGroup, copy),
          softAffinityGroup: rename(d.softAffinityGroup, copy),
        },
      });
    }
  }
  return { hosts, placed };
}

const times = new Float64Array(1 << 21);

/**
 * One timed run at steady state: each step releases a random running VM and places a new one.
 * Decisions/s counts the whole step; the p50/p99 are of the placement call alone.
 */
function run<H>(
  site: Site<H>,
  next: () => Demand,
  live: Placed<H>[],
  steady: number,
  pick: () => number,
  ms: number,
) {
  let n = 0;
  const start = performance.now();
  let now = start;
  while ((now - start < ms || n < MIN_DECISIONS) && n < times.length) {
    for (let k = 0; k < 100; k++, n++) {
      // Releases only at the steady count: demands that fit nowhere must not drain the site.
      if (live.length >= steady) {
        const j = pick() % live.length;
        const gone = live[j]!;
        live[j] = live[live.length - 1]!;
        live.pop();
        site.release(gone.h, gone.d);
      }
      const d = next();
      const t0 = performance.now();
      const h = site.place(d);
      times[n] = performance.now() - t0;
      if (h !== undefined) {
        site.apply(h, d);
        live.push({ h, d });
      }
    }
    now = performance.now();
  }
  const sorted = times.subarray(0, n).sort();
  return {
    rate: n / ((now - start) / 1000),
    p50Us: quantile(sorted, 0.5) * 1000,
    p99Us: quantile(sorted, 0.99) * 1000,
  };
}

// biome-ignore lint/correctness/noUnusedVariables: written only, so the snapshot stays reachable while the heap is read
let kept: unknown;

/**
 * Heap held by a snapshot, built from a store-like host list that is then dropped: as loaded, and
 * holding the given placements (with VM ids of its own, as a store read would bring).
 */
function snapshotHeap(n: number, placed: readonly Placed<string>[]): { empty: number; loaded: number } {
  kept = undefined;
  const base = heapAfterGc();
  const s = new Snapshot(siteHosts(n));
  kept = s;
  const empty = heapAfterGc() - base;
  placed.forEach(({ h, d }, i) => {
    s.apply(h, { ...d, vmId: `vm-${i}` });
  });
  const loaded = heapAfterGc() - base;
  kept = undefined;
  return { empty, loaded };
}

export function measureCore(input: CoreInput): CoreOutput {
  const { hosts, placed } = loadedSite(input.hosts);
  const snapshot = new Snapshot(hosts);
  const pipeline = pipelineSite(snapshot);
  const naiveState = new NaiveSite(hosts);
  const naive = naiveSite(naiveState);
  const livePipeline = placed.map((p) => ({ ...p }));
  const liveNaive = placed.map(({ h, d }) => ({ h: snapshot.slot(h), d }));
  for (const { h, d } of livePipeline) pipeline.apply(h, d);
  for (const { h, d } of liveNaive) naive.apply(h, d);
  const vms = placed.length;
  const memoryShare = placed.reduce((a, p) => a + p.d.memoryMiB, 0) / enabledMemory(hosts);

  // Same demands and same departures for both: a stream and a picker each, from the same seeds.
  const nextP = demandStream(input.hosts, 4);
  const nextN = demandStream(input.hosts, 4);
  const pickP = random(5);
  const pickN = random(5);
  const pickerP = () => pickP.int(2 ** 31);
  const pickerN = () => pickN.int(2 ** 31);
  run(pipeline, nextP, livePipeline, vms, pickerP, input.warmupMs);
  run(naive, nextN, liveNaive, vms, pickerN, input.warmupMs);

  const out: CoreOutput = {
    pipeline: { rate: [], p50Us: [], p99Us: [] },
    naive: { rate: [], p50Us: [], p99Us: [] },
    heapEmpty: [],
    heapLoaded: [],
    vms,
    memoryShare,
  };
  // Alternating runs, so a busy neighbour slows both contenders rather than one.
  for (let r = 0; r < input.runs; r++) {
    for (const [samples, result] of [
      [out.pipeline, run(pipeline, nextP, livePipeline, vms, pickerP, input.runMs)],
      [out.naive, run(naive, nextN, liveNaive, vms, pickerN, input.runMs)],
    ] as const) {
      samples.rate.push(result.rate);
      samples.p50Us.push(result.p50Us);
      samples.p99Us.push(result.p99Us);
    }
  }
  for (let r = 0; r < Math.min(3, input.runs); r++) {
    const heap = snapshotHeap(input.hosts, livePipeline);
    out.heapEmpty.push(heap.empty);
    out.heapLoaded.push(heap.loaded);
  }
  return out;
}

if (import.meta.main) await childMain(measureCore);
