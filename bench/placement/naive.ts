/**
 * The same-run baseline of the placement-core timings: the scheduler one writes first. Hosts are
 * plain objects; every decision visits every host, checks state, kind, capacity, devices, labels and
 * anti-affinity field by field, and keeps the best fit (most filled after placing, soft affinity
 * first). No typed arrays, no index, no compiled policy.
 */
import type { Demand, HostSnapshot } from "../../shared/scheduler/types.ts";

type NaiveHost = {
  id: string;
  kind: string;
  state: string;
  labels: Record<string, string>;
  limitVcpus: number;
  limitMemoryMiB: number;
  freeVcpus: number;
  freeMemoryMiB: number;
  freeDevices: Record<string, number>;
  groups: string[];
};

export class NaiveSite {
  readonly hosts: NaiveHost[];

  constructor(hosts: readonly HostSnapshot[]) {
    this.hosts = hosts.map((h) => ({
      id: h.id,
      kind: h.kind,
      state: h.state,
      labels: { ...h.labels },
      limitVcpus: h.limitVcpus,
      limitMemoryMiB: h.limitMemoryMiB,
      freeVcpus: h.freeVcpus,
      freeMemoryMiB: h.freeMemoryMiB,
      freeDevices: { ...h.freeDevices },
      groups: [...(h.groups ?? [])],
    }));
  }

  /** The index of the best host for `d`, or -1. */
  place(d: Demand): number {
    let best = -1;
    let bestScore = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < this.hosts.length; i++) {
      const h = this.hosts[i]!;
      if (h.state !== "enabled") continue;
      if (d.hypervisor !== undefined && h.kind !== d.hypervisor) continue;
      if (h.freeMemoryMiB < d.memoryMiB || h.freeVcpus < d.vcpus) continue;
      if (Object.entries(d.devices).some(([model, n]) => (h.freeDevices[model] ?? 0) < n)) continue;
      if (Object.entries(d.requiredLabels ?? {}).some(([k, v]) => h.labels[k] !== v)) continue;
      if (d.antiAffinityGroup !== undefined && h.groups.includes(d.antiAffinityGroup)) continue;
      const left =
        ((h.freeVcpus - d.vcpus) / h.limitVcpus + (h.freeMemoryMiB - d.memoryMiB) / h.limitMemoryMiB) / 2;
      const near = d.softAffinityGroup !== undefined && h.groups.includes(d.softAffinityGroup) ? 2 : 0;
      const score = near + 1 - left;
      // Hosts are in id order, so keeping the first of equal scores gives ties to the smaller id.
      if (score > bestScore) {
        bestScore = score;
        best = i;
      }
    }
    return best;
  }

  apply(i: number, d: Demand, sign = -1): void {
    const h = this.hosts[i]!;
    h.freeVcpus += sign * d.vcpus;
    h.freeMemoryMiB += sign * d.memoryMiB;
    for (const [model, n] of Object.entries(d.devices))
      h.freeDevices[model] = (h.freeDevices[model] ?? 0) + sign * n;
    for (const g of [d.antiAffinityGroup, d.softAffinityGroup]) {
      if (g === undefined) continue;
      if (sign < 0) h.groups.push(g);
      else h.groups.splice(h.groups.indexOf(g), 1);
    }
  }

  release(i: number, d: Demand): void {
    this.apply(i, d, 1);
  }
}
