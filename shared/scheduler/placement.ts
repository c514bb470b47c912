/**
 * The original entry points, kept for `shared/services/place.ts`: `rank` now runs the default policy
 * of the pipeline (`pipeline.ts`) over a fresh snapshot, so callers get the GPU-aware best fit and
 * every filter without changing. New code should hold a `Snapshot` and call `placeOne` instead.
 */
import type { DeviceCounts, HostState, HypervisorKind } from "../contracts/common.ts";
import { dryRun, explain as explainPipeline, Snapshot } from "./pipeline.ts";
import { resolvePolicy } from "./policy.ts";
import type { Demand, HostSnapshot, Rejections } from "./types.ts";

export type { Demand, HostSnapshot, Rejections } from "./types.ts";

/** @deprecated The filters as they were before the pipeline; see `FILTERS` in `filters.ts`. */
export type Filter = {
  name: string;
  reason: string;
  accepts(host: LegacyHost, demand: Demand): boolean;
};
type LegacyHost = {
  kind: HypervisorKind;
  state: HostState;
  freeVcpus: number;
  freeMemoryMiB: number;
  freeDevices: DeviceCounts;
};

/** @deprecated Kept for callers of the old core; the pipeline's filters are in `filters.ts`. */
export const FILTERS: readonly Filter[] = [
  { name: "host_state", reason: "host is not enabled", accepts: (h) => h.state === "enabled" },
  {
    name: "hypervisor",
    reason: "host runs another hypervisor kind",
    accepts: (h, d) => d.hypervisor === undefined || h.kind === d.hypervisor,
  },
  { name: "vcpus", reason: "not enough free vCPUs", accepts: (h, d) => h.freeVcpus >= d.vcpus },
  { name: "memory", reason: "not enough free memory", accepts: (h, d) => h.freeMemoryMiB >= d.memoryMiB },
  {
    name: "devices",
    reason: "not enough free devices of the model asked for",
    accepts: (h, d) => Object.entries(d.devices).every(([m, n]) => (h.freeDevices[m] ?? 0) >= n),
  },
];

/**
 * @deprecated Mean fraction of vCPUs and memory left after placing; lower is a tighter fit. The
 * pipeline's `pack` weigher scores the other way round (higher is better) and counts devices too.
 */
export function packScore(h: HostSnapshot, d: Demand): number {
  const cpuLeft = h.limitVcpus > 0 ? (h.freeVcpus - d.vcpus) / h.limitVcpus : 0;
  const memLeft = h.limitMemoryMiB > 0 ? (h.freeMemoryMiB - d.memoryMiB) / h.limitMemoryMiB : 0;
  return (cpuLeft + memLeft) / 2;
}

export type Placement<H extends HostSnapshot = HostSnapshot> = {
  candidates: H[];
  rejections: Rejections;
  considered: number;
};

/**
 * Filters and ranks hosts for one demand with the default policy, best first; the candidates are the
 * very objects passed in. `exclude` drops hosts outright (a migration's source).
 */
export function rank<H extends HostSnapshot>(
  hosts: readonly H[],
  demand: Demand,
  exclude?: ReadonlySet<string>,
): Placement<H> {
  const kept = exclude ? hosts.filter((h) => !exclude.has(h.id)) : hosts;
  const byId = new Map(kept.map((h) => [h.id, h]));
  const run = dryRun(new Snapshot(kept), demand, resolvePolicy());
  return {
    candidates: run.candidates.map((c) => byId.get(c.hostId)!),
    rejections: run.rejections,
    considered: run.considered,
  };
}

/** A readable summary of why no host fits, e.g. "no host fits among 3 considered: vcpus rejected 2 (...)". */
export function explain(p: { rejections: Rejections; considered: number }): string {
  return explainPipeline(p);
}
