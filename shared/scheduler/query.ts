/**
 * A demand resolved against one snapshot: names become slot and column numbers once per decision, so
 * the filters and weighers only compare numbers per host. One `Query` is reused for every decision
 * (its arrays grow once and are then written in place), which keeps the pipeline allocation-free.
 */
import type { Snapshot } from "./snapshot.ts";
import type { Demand } from "./types.ts";

/** `kind` and `sameHost` when the demand asks nothing of them. */
export const ANY = -1;
/** `kind` and `sameHost` when the demand asks for something no host can be. */
export const NONE = -2;

export class Query {
  demand: Demand = { vcpus: 0, memoryMiB: 0, devices: {} };
  vcpus = 0;
  memoryMiB = 0;
  /** Hypervisor kind index, `ANY`, or `NONE` (a kind no host runs). */
  kind = ANY;
  /** Device models asked for (count > 0): column numbers and counts; `devicesUnknown` when no host has a model. */
  devicesN = 0;
  deviceModel = new Int32Array(4);
  deviceCount = new Int32Array(4);
  devicesTotal = 0;
  devicesUnknown = false;
  labelsN = 0;
  labelKeys: string[] = [];
  labelValues: string[] = [];
  /** Slot → members, for the groups that already have members placed; undefined otherwise. */
  affinity: Map<number, number> | undefined;
  antiAffinity: Map<number, number> | undefined;
  softAffinity: Map<number, number> | undefined;
  /** The one slot a same-host constraint allows, `ANY` (none asked) or `NONE` (no slot can). */
  sameHost = ANY;
  /** Slots holding VMs the demand must stay apart from. */
  avoidN = 0;
  avoid = new Int32Array(4);
  /** The pipeline's candidates (slots) and their running scores, position for position. */
  slots = new Int32Array(0);
  scores = new Float64Array(0);

  /** Resolves `d` against `s`, overwriting the previous decision's values. */
  reset(s: Snapshot, d: Demand): this {
    if (this.slots.length < s.size) {
      this.slots = new Int32Array(s.size);
      this.scores = new Float64Array(s.size);
    }
    this.demand = d;
    this.vcpus = d.vcpus;
    this.memoryMiB = d.memoryMiB;
    this.kind = d.hypervisor === undefined ? ANY : s.kindIndex(d.hypervisor);
    if (this.kind === -1 && d.hypervisor !== undefined) this.kind = NONE;
    this.resetDevices(s, d);
    this.labelsN = 0;
    for (const key in d.requiredLabels) {
      this.labelKeys[this.labelsN] = key;
      this.labelValues[this.labelsN++] = d.requiredLabels[key]!;
    }
    this.affinity = d.affinityGroup === undefined ? undefined : s.members.groupHosts.get(d.affinityGroup);
    this.antiAffinity =
      d.antiAffinityGroup === undefined ? undefined : s.members.groupHosts.get(d.antiAffinityGroup);
    this.softAffinity =
      d.softAffinityGroup === undefined ? undefined : s.members.groupHosts.get(d.softAffinityGroup);
    this.sameHost = ANY;
    if (d.sameHostAs)
      for (const vm of d.sameHostAs) {
        const at = s.members.vmHost.get(vm) ?? NONE;
        this.sameHost = this.sameHost === ANY || this.sameHost === at ? at : NONE;
      }
    this.avoidN = 0;
    if (d.differentHostFrom)
      for (const vm of d.differentHostFrom) {
        const at = s.members.vmHost.get(vm);
        if (at === undefined) continue;
        if (this.avoidN === this.avoid.length) this.avoid = grow(this.avoid);
        this.avoid[this.avoidN++] = at;
      }
    return this;
  }

  private resetDevices(s: Snapshot, d: Demand): void {
    this.devicesN = 0;
    this.devicesTotal = 0;
    this.devicesUnknown = false;
    for (const model in d.devices) {
      const n = d.devices[model]!;
      if (n <= 0) continue;
      const m = s.modelIndex(model);
      if (m < 0) this.devicesUnknown = true;
      if (this.devicesN === this.deviceModel.length) {
        this.deviceModel = grow(this.deviceModel);
        this.deviceCount = grow(this.deviceCount);
      }
      this.deviceModel[this.devicesN] = m;
      this.deviceCount[this.devicesN++] = n;
      this.devicesTotal += n;
    }
  }
}

function grow(a: Int32Array): Int32Array<ArrayBuffer> {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}
