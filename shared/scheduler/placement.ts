/**
 * The placement core: pure functions over a snapshot of host state. Filters reject hosts that cannot
 * take the demand (each rejection is counted under the filter's name, so "no capacity" can say why);
 * a weigher ranks the rest. The claim itself is a conditional write made afterwards by the caller.
 */
import type { DeviceCounts, HostState, HypervisorKind } from "../contracts/common.ts";

export type Demand = {
  vcpus: number;
  memoryMiB: number;
  devices: DeviceCounts;
  hypervisor?: HypervisorKind | undefined;
};

export type HostSnapshot = {
  id: string;
  kind: HypervisorKind;
  state: HostState;
  limitVcpus: number;
  limitMemoryMiB: number;
  freeVcpus: number;
  freeMemoryMiB: number;
  freeDevices: DeviceCounts;
};

export type Filter = { name: string; reason: string; accepts(host: HostSnapshot, demand: Demand): boolean };

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
 * Pack (best fit): prefer the host the demand fills most, so large holes stay free for large VMs.
 * Score is the mean fraction of each resource left after placing; lower is a tighter fit.
 */
export function packScore(h: HostSnapshot, d: Demand): number {
  const cpuLeft = h.limitVcpus > 0 ? (h.freeVcpus - d.vcpus) / h.limitVcpus : 0;
  const memLeft = h.limitMemoryMiB > 0 ? (h.freeMemoryMiB - d.memoryMiB) / h.limitMemoryMiB : 0;
  return (cpuLeft + memLeft) / 2;
}

export type Rejections = Record<string, { count: number; reason: string }>;
export type Placement = { candidates: HostSnapshot[]; rejections: Rejections; considered: number };

/** Filters and ranks hosts for one demand. `exclude` drops hosts outright (a migration's source). */
export function rank(
  hosts: readonly HostSnapshot[],
  demand: Demand,
  exclude?: ReadonlySet<string>,
): Placement {
  const rejections: Rejections = {};
  const scored: { host: HostSnapshot; score: number }[] = [];
  for (const host of hosts) {
    if (exclude?.has(host.id)) continue;
    const failed = FILTERS.find((f) => !f.accepts(host, demand));
    if (failed) {
      const r = rejections[failed.name] ?? { count: 0, reason: failed.reason };
      r.count++;
      rejections[failed.name] = r;
      continue;
    }
    scored.push({ host, score: packScore(host, demand) });
  }
  // Ties broken by id so concurrent schedulers agree on an order and conflicts are retried in turn.
  scored.sort((a, b) => a.score - b.score || (a.host.id < b.host.id ? -1 : 1));
  return {
    candidates: scored.map((s) => s.host),
    rejections,
    considered: hosts.length - (exclude?.size ?? 0),
  };
}

/** A readable summary of why no host fits, e.g. "3 hosts: vcpus 2 (not enough free vCPUs), memory 1 (...)". */
export function explain(p: Placement): string {
  const parts = Object.entries(p.rejections).map(([name, r]) => `${name} rejected ${r.count} (${r.reason})`);
  return `no host fits among ${p.considered} considered${parts.length ? `: ${parts.join("; ")}` : ""}`;
}
