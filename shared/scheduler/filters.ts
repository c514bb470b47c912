/**
 * Filters: each rejects the hosts that cannot take a demand, and says why in one line. The pipeline
 * runs a policy's filters in order and counts each rejected host under the first one it failed, so
 * "no capacity" can say which constraint ran out. Registered by name in a typed map, never loaded
 * from strings the compiler cannot follow.
 */
import { ANY, type Query } from "./query.ts";
import type { Snapshot } from "./snapshot.ts";

export type Filter = {
  readonly name: string;
  /** Why a host failed, as shown to the user. */
  readonly reason: string;
  /** False when the demand asks nothing of this filter: it would accept every host, so it is skipped. */
  active(q: Query, s: Snapshot): boolean;
  /** Whether slot `i` can take the demand. Reads only typed arrays and the query: no allocation. */
  accepts(s: Snapshot, i: number, q: Query): boolean;
  /**
   * Keeps, in place and in order, the slots of `slots[0..n)` it accepts; returns how many. Every
   * filter spells out this same loop on purpose: its own `this.accepts` call site then sees one
   * function and is inlined, where one shared loop calling every filter's `accepts` would be
   * megamorphic and make the pipeline several times slower.
   */
  keep(s: Snapshot, q: Query, slots: Int32Array, n: number): number;
};

const always = () => true;

export const FILTERS = {
  host_state: {
    name: "host_state",
    reason: "host is not enabled",
    active: always,
    accepts: (s, i) => s.enabled[i] === 1,
    keep(s, q, slots, n) {
      let kept = 0;
      for (let p = 0; p < n; p++) if (this.accepts(s, slots[p]!, q)) slots[kept++] = slots[p]!;
      return kept;
    },
  },
  hypervisor: {
    name: "hypervisor",
    reason: "host runs another hypervisor kind",
    active: (q) => q.kind !== ANY,
    accepts: (s, i, q) => s.kind[i] === q.kind,
    keep(s, q, slots, n) {
      let kept = 0;
      for (let p = 0; p < n; p++) if (this.accepts(s, slots[p]!, q)) slots[kept++] = slots[p]!;
      return kept;
    },
  },
  // Free counters already include the allocation ratios (limit = floor(capacity × ratio)).
  memory: {
    name: "memory",
    reason: "not enough free memory",
    active: always,
    accepts: (s, i, q) => s.freeMemoryMiB[i]! >= q.memoryMiB,
    keep(s, q, slots, n) {
      let kept = 0;
      for (let p = 0; p < n; p++) if (this.accepts(s, slots[p]!, q)) slots[kept++] = slots[p]!;
      return kept;
    },
  },
  vcpus: {
    name: "vcpus",
    reason: "not enough free vCPUs",
    active: always,
    accepts: (s, i, q) => s.freeVcpus[i]! >= q.vcpus,
    keep(s, q, slots, n) {
      let kept = 0;
      for (let p = 0; p < n; p++) if (this.accepts(s, slots[p]!, q)) slots[kept++] = slots[p]!;
      return kept;
    },
  },
  devices: {
    name: "devices",
    reason: "not enough free devices of the model asked for",
    active: (q) => q.devicesN > 0,
    accepts: (s, i, q) => {
      if (q.devicesUnknown) return false;
      for (let d = 0; d < q.devicesN; d++)
        if (s.freeDevices[q.deviceModel[d]!]![i]! < q.deviceCount[d]!) return false;
      return true;
    },
    keep(s, q, slots, n) {
      let kept = 0;
      for (let p = 0; p < n; p++) if (this.accepts(s, slots[p]!, q)) slots[kept++] = slots[p]!;
      return kept;
    },
  },
  labels: {
    name: "labels",
    reason: "host lacks a required label",
    active: (q) => q.labelsN > 0,
    accepts: (s, i, q) => {
      const labels = s.labels[i];
      if (!labels) return false;
      for (let l = 0; l < q.labelsN; l++) if (labels[q.labelKeys[l]!] !== q.labelValues[l]) return false;
      return true;
    },
    keep(s, q, slots, n) {
      let kept = 0;
      for (let p = 0; p < n; p++) if (this.accepts(s, slots[p]!, q)) slots[kept++] = slots[p]!;
      return kept;
    },
  },
  // Active only once the group has a member somewhere: its first member may go anywhere.
  affinity: {
    name: "affinity",
    reason: "host does not hold the VM's affinity group",
    active: (q) => q.affinity !== undefined,
    accepts: (_s, i, q) => q.affinity!.has(i),
    keep(s, q, slots, n) {
      let kept = 0;
      for (let p = 0; p < n; p++) if (this.accepts(s, slots[p]!, q)) slots[kept++] = slots[p]!;
      return kept;
    },
  },
  anti_affinity: {
    name: "anti_affinity",
    reason: "host holds a member of the VM's anti-affinity group",
    active: (q) => q.antiAffinity !== undefined,
    accepts: (_s, i, q) => !q.antiAffinity!.has(i),
    keep(s, q, slots, n) {
      let kept = 0;
      for (let p = 0; p < n; p++) if (this.accepts(s, slots[p]!, q)) slots[kept++] = slots[p]!;
      return kept;
    },
  },
  same_host: {
    name: "same_host",
    reason: "host does not hold every VM this one must share a host with",
    active: (q) => q.sameHost !== ANY,
    accepts: (_s, i, q) => i === q.sameHost,
    keep(s, q, slots, n) {
      let kept = 0;
      for (let p = 0; p < n; p++) if (this.accepts(s, slots[p]!, q)) slots[kept++] = slots[p]!;
      return kept;
    },
  },
  different_host: {
    name: "different_host",
    reason: "host holds a VM this one must stay apart from",
    active: (q) => q.avoidN > 0,
    accepts: (_s, i, q) => {
      for (let a = 0; a < q.avoidN; a++) if (q.avoid[a] === i) return false;
      return true;
    },
    keep(s, q, slots, n) {
      let kept = 0;
      for (let p = 0; p < n; p++) if (this.accepts(s, slots[p]!, q)) slots[kept++] = slots[p]!;
      return kept;
    },
  },
} as const satisfies Record<string, Filter>;

export type FilterName = keyof typeof FILTERS;
