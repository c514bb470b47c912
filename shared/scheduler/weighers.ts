/**
 * Weighers: each scores an acceptable host from 0 to 1, higher is better. A policy multiplies each by
 * its weight and the highest total wins. Scores are absolute (not normalised over the candidates, as
 * nova does), so one pass over the hosts is enough and a weight of 4 against 1 acts as a tier.
 */
import type { Query } from "./query.ts";
import type { Snapshot } from "./snapshot.ts";

export type Weigher = {
  readonly name: string;
  readonly description: string;
  /** False when the score would be the same for every host: it is then skipped (and reads 0). */
  active(q: Query, s: Snapshot): boolean;
  /** Score of slot `i`, 0..1, for a host every filter accepted. No allocation. */
  score(s: Snapshot, i: number, q: Query): number;
  /** Adds `weight × score` of each of `slots[0..n)` to `scores[0..n)`; its own loop, as `Filter.keep` explains. */
  add(s: Snapshot, q: Query, slots: Int32Array, n: number, weight: number, scores: Float64Array): void;
};

const always = () => true;

/** A free device stays usable while this share of its host's per-device vCPUs and memory is left for it. */
const USABLE_SHARE = 0.5;

/** Fraction of the host's vCPUs and memory still free after placing the demand, averaged. */
function leftAfter(s: Snapshot, i: number, q: Query): number {
  const cpu = s.limitVcpus[i]! > 0 ? (s.freeVcpus[i]! - q.vcpus) / s.limitVcpus[i]! : 0;
  const mem = s.limitMemoryMiB[i]! > 0 ? (s.freeMemoryMiB[i]! - q.memoryMiB) / s.limitMemoryMiB[i]! : 0;
  return (cpu + mem) / 2;
}

export const WEIGHERS = {
  /**
   * Best fit: the host the demand fills most, so large holes stay whole for large VMs. On a device
   * host the devices dominate (0.8 against 0.2 for vCPUs and memory): a 1-GPU VM goes where one GPU
   * is left rather than breaking into an empty 8-GPU host, and GPU fragmentation is what fails first
   * on a mixed trace. (On synthetic heterogeneous traces this placed more before the first failure
   * than plain best fit on the sum of cpu, memory and devices; equal weights did worse.)
   */
  pack: {
    name: "pack",
    description: "best fit: least capacity left after placing, devices first on device hosts",
    active: always,
    score: (s, i, q) => {
      const left = leftAfter(s, i, q);
      const limit = s.limitDevicesTotal[i]!;
      if (limit <= 0) return 1 - left;
      return 1 - (0.2 * left + (0.8 * (s.freeDevicesTotal[i]! - q.devicesTotal)) / limit);
    },
    add(s, q, slots, n, weight, scores) {
      for (let p = 0; p < n; p++) scores[p]! += weight * this.score(s, slots[p]!, q);
    },
  },
  /**
   * Devices left usable. A free device is only worth something with vCPUs and memory beside it: once a
   * device host's vCPUs or memory run low, its free GPUs are stranded, and on a GPU-heavy trace that is
   * what fails first (the failing VM needs one GPU and finds GPUs free only on hosts without the vCPUs
   * or memory to go with them). A device counts as usable while at least half of the host's own
   * vCPUs-per-device and memory-per-device share is left for it; the score is the share of the host's
   * devices that stay usable after placing. Host-relative, so it needs no knowledge of the workload
   * (the idea of FGD, USENIX ATC 2023, in a form a one-pass weigher can afford). Measured on the
   * Alibaba openb trace by `npm run bench` (section 3).
   */
  fragmentation: {
    name: "fragmentation",
    description: "devices left usable: vCPUs and memory kept beside each free device of a device host",
    active: (_q, s) => s.deviceHostCount > 0,
    score: (s, i, q) => {
      const limit = s.limitDevicesTotal[i]!;
      if (limit <= 0) return 1;
      const free = s.freeDevicesTotal[i]! - q.devicesTotal;
      if (free <= 0) return 1;
      const cpu = (s.freeVcpus[i]! - q.vcpus) / ((USABLE_SHARE * s.limitVcpus[i]!) / limit);
      const mem = (s.freeMemoryMiB[i]! - q.memoryMiB) / ((USABLE_SHARE * s.limitMemoryMiB[i]!) / limit);
      return 1 - Math.max(0, free - Math.min(cpu, mem)) / limit;
    },
    add(s, q, slots, n, weight, scores) {
      for (let p = 0; p < n; p++) scores[p]! += weight * this.score(s, slots[p]!, q);
    },
  },
  spread: {
    name: "spread",
    description: "least allocated: most capacity left after placing",
    active: always,
    score: leftAfter,
    add(s, q, slots, n, weight, scores) {
      for (let p = 0; p < n; p++) scores[p]! += weight * this.score(s, slots[p]!, q);
    },
  },
  load: {
    name: "load",
    description: "least loaded, as the host's agent last reported (0.5 when unknown)",
    active: always,
    score: (s, i) => {
      const load = s.load[i]!;
      return Number.isNaN(load) ? 0.5 : 1 - Math.min(1, Math.max(0, load));
    },
    add(s, q, slots, n, weight, scores) {
      for (let p = 0; p < n; p++) scores[p]! += weight * this.score(s, slots[p]!, q);
    },
  },
  power_saving: {
    name: "power_saving",
    description: "hosts already in use, so idle hosts stay empty and can be powered down",
    active: always,
    score: (s, i) =>
      s.freeVcpus[i]! < s.limitVcpus[i]! ||
      s.freeMemoryMiB[i]! < s.limitMemoryMiB[i]! ||
      s.freeDevicesTotal[i]! < s.limitDevicesTotal[i]!
        ? 1
        : 0,
    add(s, q, slots, n, weight, scores) {
      for (let p = 0; p < n; p++) scores[p]! += weight * this.score(s, slots[p]!, q);
    },
  },
  soft_affinity: {
    name: "soft_affinity",
    description: "hosts already holding members of the VM's soft-affinity group",
    active: (q) => q.softAffinity !== undefined,
    score: (_s, i, q) => (q.softAffinity!.has(i) ? 1 : 0),
    add(s, q, slots, n, weight, scores) {
      for (let p = 0; p < n; p++) scores[p]! += weight * this.score(s, slots[p]!, q);
    },
  },
  /**
   * Keeps device hosts (GPUs) for demands that need devices: a VM without devices goes to a host
   * without any whenever one fits, so CPU-only VMs do not strand a GPU host's vCPUs and memory.
   */
  device_reserve: {
    name: "device_reserve",
    description: "hosts without devices for VMs that need none",
    active: (q, s) => q.devicesN === 0 && s.deviceHostCount > 0,
    score: (s, i) => (s.limitDevicesTotal[i]! > 0 ? 0 : 1),
    add(s, q, slots, n, weight, scores) {
      for (let p = 0; p < n; p++) scores[p]! += weight * this.score(s, slots[p]!, q);
    },
  },
} as const satisfies Record<string, Weigher>;

export type WeigherName = keyof typeof WEIGHERS;
