/**
 * The placement pipeline: a policy's filters reject the hosts that cannot take a demand, its weighers
 * score the rest, and the best score wins (ties to the smaller host id, so concurrent schedulers agree
 * on an order and retry conflicts in turn). Pure over a `Snapshot`: the claim is a conditional write
 * the caller makes afterwards, and `Snapshot.apply` records it for the next decision.
 *
 * `placeOne` is the fast path: it allocates nothing per host, and when the policy starts with
 * host_state, hypervisor, memory (every built-in does) it visits only the enabled hosts of the right
 * kind with enough free memory, counting the others from the index.
 */
import { FILTERS, type Filter } from "./filters.ts";
import type { Policy } from "./policy.ts";
import { ANY, type Query } from "./query.ts";
import { BUILT_INS, type Registry } from "./registry.ts";
import type { Snapshot } from "./snapshot.ts";
import type { Candidate, Demand, DryRun, PlaceResult, Rejections } from "./types.ts";
import type { Weigher } from "./weighers.ts";

export { Snapshot } from "./snapshot.ts";

/** A policy resolved to plugin objects, with scratch space reused by every decision. */
type Compiled = {
  filters: Filter[];
  weighers: Weigher[];
  weights: number[];
  /** The policy starts with host_state, hypervisor, memory: the index answers those three. */
  indexed: boolean;
  /** Hosts rejected by each filter, by policy position. */
  counts: Int32Array;
  /** This decision's active filters (and their policy positions) and weighers (and weights). */
  activeFilters: Filter[];
  activeAt: Int32Array;
  filtersN: number;
  /** Active filters the index stands in for (those at policy positions 0..2). */
  indexedN: number;
  activeWeighers: Weigher[];
  activeWeights: Float64Array;
  weighersN: number;
};

/** Compiled policies, per registry and then per policy object. */
const compiled = new WeakMap<Registry, WeakMap<Policy, Compiled>>();

/**
 * Resolves a policy in a registry once, cached per (registry, policy) pair of objects (so treat both
 * as immutable); throws on names the registry does not hold, as a policy may come from configuration
 * the compiler never saw (site configs are checked at start-up, so this is a bug when it happens).
 */
function compile(policy: Policy, registry: Registry): Compiled {
  let cache = compiled.get(registry);
  if (!cache) {
    cache = new WeakMap();
    compiled.set(registry, cache);
  }
  const known = cache.get(policy);
  if (known) return known;
  const filters = policy.filters.map((name) => {
    if (!Object.hasOwn(registry.filters, name)) throw new Error(`unknown filter ${name}`);
    return registry.filters[name] as Filter;
  });
  const weighers = policy.weighers.map(({ name, weight }) => {
    if (!Object.hasOwn(registry.weighers, name)) throw new Error(`unknown weigher ${name}`);
    if (!Number.isFinite(weight)) throw new Error(`weigher ${name} has a weight that is not a number`);
    return registry.weighers[name] as Weigher;
  });
  const c: Compiled = {
    filters,
    weighers,
    weights: policy.weighers.map((w) => w.weight),
    // The index stands in for exactly the built-in three, so the objects must be theirs.
    indexed: (["host_state", "hypervisor", "memory"] as const).every(
      (name, at) => filters[at] === FILTERS[name],
    ),
    counts: new Int32Array(filters.length),
    activeFilters: [...filters],
    activeAt: new Int32Array(filters.length),
    filtersN: 0,
    indexedN: 0,
    activeWeighers: [...weighers],
    activeWeights: new Float64Array(weighers.length),
    weighersN: 0,
  };
  cache.set(policy, c);
  return c;
}

/** Resets the counts and picks the filters and weighers this demand needs. */
function prepare(c: Compiled, s: Snapshot, q: Query): void {
  c.counts.fill(0);
  c.filtersN = c.indexedN = c.weighersN = 0;
  for (let f = 0; f < c.filters.length; f++) {
    const filter = c.filters[f]!;
    if (!filter.active(q, s)) continue;
    if (c.indexed && f < 3) c.indexedN++;
    c.activeFilters[c.filtersN] = filter;
    c.activeAt[c.filtersN++] = f;
  }
  for (let w = 0; w < c.weighers.length; w++) {
    if (!c.weighers[w]!.active(q, s)) continue;
    c.activeWeighers[c.weighersN] = c.weighers[w]!;
    c.activeWeights[c.weighersN++] = c.weights[w]!;
  }
}

/** The candidates before filtering: every present slot. Returns how many. */
function allSlots(s: Snapshot, q: Query): number {
  let n = 0;
  for (let i = 0; i < s.size; i++) if (s.present[i]) q.slots[n++] = i;
  return n;
}

/**
 * The candidates from the index: enabled slots of the asked kind with enough free memory. The slots
 * it skips are counted under host_state, hypervisor and memory, as a visit would have counted them.
 */
function indexedSlots(c: Compiled, s: Snapshot, q: Query): number {
  const ix = s.index;
  c.counts[0]! += s.presentCount - s.enabledCount;
  if (q.kind !== ANY) c.counts[1]! += s.enabledCount - (q.kind >= 0 ? ix.len[q.kind]! : 0);
  let n = 0;
  for (let k = 0; k < ix.order.length; k++) {
    if (q.kind !== ANY && q.kind !== k) continue;
    const order = ix.order[k]!;
    const lo = ix.lowerBound(k, q.memoryMiB);
    c.counts[2]! += lo;
    for (let p = lo; p < ix.len[k]!; p++) q.slots[n++] = order[p]!;
  }
  return n;
}

/** Runs the active filters from `from` over the first `n` candidates, counting what each drops. */
function filter(c: Compiled, s: Snapshot, q: Query, from: number, n: number): number {
  for (let f = from; f < c.filtersN && n > 0; f++) {
    const kept = c.activeFilters[f]!.keep(s, q, q.slots, n);
    c.counts[c.activeAt[f]!]! += n - kept;
    n = kept;
  }
  return n;
}

/** Sums the active weighers' weighted scores into `q.scores[0..n)`. */
function weigh(c: Compiled, s: Snapshot, q: Query, n: number): void {
  q.scores.fill(0, 0, n);
  for (let w = 0; w < c.weighersN; w++)
    c.activeWeighers[w]!.add(s, q, q.slots, n, c.activeWeights[w]!, q.scores);
}

function rejectionsOf(c: Compiled): Rejections {
  const out: Rejections = {};
  c.filters.forEach((f, at) => {
    if (c.counts[at]! > 0) out[f.name] = { count: c.counts[at]!, reason: f.reason };
  });
  return out;
}

/**
 * Chooses the host for one demand: the highest-scoring host every filter accepts, or none with the
 * count of hosts each filter rejected. Does not change the snapshot; `snapshot.apply` does. The
 * policy's names resolve in `registry` (the built-ins by default; a site's adds plugins' stages).
 */
export function placeOne(
  snapshot: Snapshot,
  demand: Demand,
  policy: Policy,
  registry: Registry = BUILT_INS,
): PlaceResult {
  const c = compile(policy, registry);
  const q = snapshot.query.reset(snapshot, demand);
  prepare(c, snapshot, q);
  let n = c.indexed ? indexedSlots(c, snapshot, q) : allSlots(snapshot, q);
  n = filter(c, snapshot, q, c.indexed ? c.indexedN : 0, n);
  weigh(c, snapshot, q, n);
  let best = -1;
  let bestScore = Number.NEGATIVE_INFINITY;
  for (let p = 0; p < n; p++) {
    const i = q.slots[p]!;
    const score = q.scores[p]!;
    if (score > bestScore || (score === bestScore && snapshot.idRank[i]! < snapshot.idRank[best]!)) {
      bestScore = score;
      best = i;
    }
  }
  return {
    hostId: best < 0 ? undefined : snapshot.ids[best],
    rejections: rejectionsOf(c),
    considered: snapshot.presentCount,
  };
}

/** Every acceptable host for `demand` with its total and per-weigher scores, best first, and the rejections. */
export function dryRun(
  snapshot: Snapshot,
  demand: Demand,
  policy: Policy,
  registry: Registry = BUILT_INS,
): DryRun {
  const c = compile(policy, registry);
  const q = snapshot.query.reset(snapshot, demand);
  prepare(c, snapshot, q);
  // Always the plain scan, never the index: a dry run is for people, and doubles as its reference.
  const n = filter(c, snapshot, q, 0, allSlots(snapshot, q));
  weigh(c, snapshot, q, n);
  const found: { slot: number; candidate: Candidate }[] = [];
  for (let p = 0; p < n; p++) {
    const i = q.slots[p]!;
    const scores: Record<string, number> = {};
    for (const w of c.weighers) scores[w.name] = 0;
    for (let w = 0; w < c.weighersN; w++)
      scores[c.activeWeighers[w]!.name] = c.activeWeighers[w]!.score(snapshot, i, q);
    found.push({ slot: i, candidate: { hostId: snapshot.ids[i]!, score: q.scores[p]!, scores } });
  }
  found.sort(
    (a, b) => b.candidate.score - a.candidate.score || snapshot.idRank[a.slot]! - snapshot.idRank[b.slot]!,
  );
  return {
    candidates: found.map((f) => f.candidate),
    rejections: rejectionsOf(c),
    considered: snapshot.presentCount,
  };
}

/** Why no host fits, e.g. "no host fits among 5 considered: vcpus rejected 3 (not enough free vCPUs); ...". */
export function explain(result: { rejections: Rejections; considered: number }): string {
  const parts = Object.entries(result.rejections).map(
    ([name, r]) => `${name} rejected ${r.count} (${r.reason})`,
  );
  return `no host fits among ${result.considered} considered${parts.length ? `: ${parts.join("; ")}` : ""}`;
}
