/**
 * A site's hosts, copied into flat typed arrays (one slot per host) and indexed by free memory, so
 * the pipeline can decide without allocating and a gang or a replay can place many VMs in sequence.
 *
 * The index keeps, per hypervisor kind, the enabled hosts sorted by free memory: a decision skips the
 * hosts too small for its memory with one binary search instead of visiting them. Typed arrays are
 * dense, so the `!` on their reads only quiets `noUncheckedIndexedAccess`.
 */
import type { HostState, HypervisorKind, Labels } from "../contracts/common.ts";
import { Members } from "./members.ts";
import { MemoryIndex } from "./memory-index.ts";
import { Query } from "./query.ts";
import type { Demand, HostSnapshot } from "./types.ts";

/**
 * Hosts in slots; filters and weighers read the public arrays by slot (treat them as read-only: change
 * hosts through `apply`, `release`, `upsert` and `remove`, which keep the index and counts true).
 */
export class Snapshot {
  /** Number of slots, removed hosts included (`present` is 0 for those). */
  size = 0;
  ids: string[] = [];
  kinds: HypervisorKind[] = [];
  states: HostState[] = [];
  labels: (Labels | undefined)[] = [];
  /** Device models known to this snapshot, and per model a column of counts by slot. */
  models: string[] = [];
  freeDevices: Int32Array[] = [];
  limitDevices: Int32Array[] = [];
  kind = new Int32Array(0);
  present = new Uint8Array(0);
  enabled = new Uint8Array(0);
  /** Position of each slot's id in id order: ties between equal scores go to the smaller id. */
  idRank = new Int32Array(0);
  limitVcpus = new Float64Array(0);
  freeVcpus = new Float64Array(0);
  limitMemoryMiB = new Float64Array(0);
  freeMemoryMiB = new Float64Array(0);
  limitDevicesTotal = new Float64Array(0);
  freeDevicesTotal = new Float64Array(0);
  /** Agent-reported load, NaN when unknown. */
  load = new Float64Array(0);
  presentCount = 0;
  enabledCount = 0;
  /** Present hosts that have any device: when there are none, device-aware weighing has nothing to do. */
  deviceHostCount = 0;
  /** VM ids and group members by slot. */
  members = new Members(0);
  /** Enabled slots by kind and free memory. */
  index = new MemoryIndex(0, 0, this.freeMemoryMiB, this.kind);
  /** The pipeline's scratch: the current decision's demand, resolved against this snapshot. */
  readonly query = new Query();
  private slotOf = new Map<string, number>();
  private kindOf = new Map<string, number>();
  private modelOf = new Map<string, number>();

  constructor(hosts: readonly HostSnapshot[] = []) {
    this.load_(hosts);
  }

  /** The slot of a host, -1 when unknown or removed. */
  slot(hostId: string): number {
    const i = this.slotOf.get(hostId);
    return i === undefined || !this.present[i] ? -1 : i;
  }

  /** Index of a hypervisor kind (-1 when no host runs it); of a device model likewise. */
  kindIndex(kind: string): number {
    return this.kindOf.get(kind) ?? -1;
  }
  modelIndex(model: string): number {
    return this.modelOf.get(model) ?? -1;
  }

  /** Whether the demand's amounts fit in the slot's free counters (capacity only, no constraints). */
  fits(i: number, d: Demand): boolean {
    if (this.freeVcpus[i]! < d.vcpus || this.freeMemoryMiB[i]! < d.memoryMiB) return false;
    for (const model in d.devices) {
      const n = d.devices[model]!;
      const m = this.modelOf.get(model);
      if (n > 0 && (m === undefined || this.freeDevices[m]![i]! < n)) return false;
    }
    return true;
  }

  /**
   * Records `demand` as placed on `hostId`: takes its amounts from the free counters and its VM id
   * and groups onto the host. Throws when the amounts do not fit: the pipeline never chooses such a
   * host, so this is a caller's bug, and refusing keeps every limit true.
   */
  apply(hostId: string, demand: Demand): void {
    const i = this.slot(hostId);
    if (i < 0) throw new Error(`unknown host ${hostId}`);
    if (!this.fits(i, demand)) throw new Error(`demand does not fit on host ${hostId}`);
    this.add(i, demand, -1);
    this.members.add(i, demand);
  }

  /** Undoes `apply(hostId, demand)`. Throws if that would free more than the host's limits. */
  release(hostId: string, demand: Demand): void {
    const i = this.slot(hostId);
    if (i < 0) throw new Error(`unknown host ${hostId}`);
    const over =
      this.freeVcpus[i]! + demand.vcpus > this.limitVcpus[i]! ||
      this.freeMemoryMiB[i]! + demand.memoryMiB > this.limitMemoryMiB[i]! ||
      Object.entries(demand.devices).some(([model, n]) => {
        const m = this.modelOf.get(model);
        return n > 0 && (m === undefined || this.freeDevices[m]![i]! + n > this.limitDevices[m]![i]!);
      });
    if (over) throw new Error(`release exceeds the limits of host ${hostId}`);
    this.add(i, demand, 1);
    this.members.remove(i, demand);
  }

  /**
   * Replaces one host (a fresh read after a failed claim), or adds it. Without `vmIds` or `groups`
   * the host keeps the members the snapshot had: a store read carries counters, not members.
   */
  upsert(fresh: HostSnapshot): void {
    const known = this.slot(fresh.id);
    const host =
      known < 0
        ? fresh
        : {
            ...fresh,
            vmIds: fresh.vmIds ?? [...this.members.vmsOn(known)],
            groups: fresh.groups ?? [...this.members.groupsOn(known)],
          };
    const i = this.slotOf.get(host.id);
    const newModel = Object.keys({ ...host.limitDevices, ...host.freeDevices }).some(
      (m) => !this.modelOf.has(m),
    );
    // New slots, kinds or models change the arrays' shapes: rare enough to rebuild everything.
    if (i === undefined || !this.kindOf.has(host.kind) || newModel) {
      this.load_([...this.toHosts().filter((h) => h.id !== host.id), host]);
      return;
    }
    this.clear(i);
    this.fill(i, host);
    this.count(i, 1);
    if (this.enabled[i]) this.index.insert(i);
  }

  /** Drops a host (deleted, or gone from a fresh read). */
  remove(hostId: string): void {
    const i = this.slot(hostId);
    if (i >= 0) this.clear(i);
  }

  /** The hosts as they stand now, in the order they were loaded. */
  toHosts(): HostSnapshot[] {
    const out: HostSnapshot[] = [];
    for (let i = 0; i < this.size; i++) {
      if (!this.present[i]) continue;
      const limitDevices: Record<string, number> = {};
      const freeDevices: Record<string, number> = {};
      this.models.forEach((model, m) => {
        if (this.limitDevices[m]![i]! > 0) limitDevices[model] = this.limitDevices[m]![i]!;
        if (this.limitDevices[m]![i]! > 0 || this.freeDevices[m]![i]! > 0)
          freeDevices[model] = this.freeDevices[m]![i]!;
      });
      const load = this.load[i]!;
      out.push({
        id: this.ids[i]!,
        kind: this.kinds[i]!,
        state: this.states[i]!,
        labels: this.labels[i],
        limitVcpus: this.limitVcpus[i]!,
        limitMemoryMiB: this.limitMemoryMiB[i]!,
        limitDevices,
        freeVcpus: this.freeVcpus[i]!,
        freeMemoryMiB: this.freeMemoryMiB[i]!,
        freeDevices,
        ...(Number.isNaN(load) ? {} : { load }),
        vmIds: [...this.members.vmsOn(i)],
        groups: [...this.members.groupsOn(i)],
      });
    }
    return out;
  }

  /** Adds `sign` × the demand's amounts to slot `i` and keeps its place in the index. */
  private add(i: number, d: Demand, sign: number): void {
    this.freeVcpus[i] = this.freeVcpus[i]! + sign * d.vcpus;
    this.freeMemoryMiB[i] = this.freeMemoryMiB[i]! + sign * d.memoryMiB;
    for (const model in d.devices) {
      const n = d.devices[model]!;
      if (n === 0) continue;
      const m = this.modelOf.get(model)!;
      this.freeDevices[m]![i] = this.freeDevices[m]![i]! + sign * n;
      this.freeDevicesTotal[i] = this.freeDevicesTotal[i]! + sign * n;
    }
    if (this.index.has(i)) this.index.move(i);
  }

  /** Forgets slot `i`'s host: its index entry, counts, VMs and groups. The slot stays, empty. */
  private clear(i: number): void {
    if (!this.present[i]) return;
    if (this.index.has(i)) this.index.delete(i);
    this.count(i, -1);
    this.members.clear(i);
    this.present[i] = 0;
    this.enabled[i] = 0;
  }

  private count(i: number, sign: number): void {
    this.presentCount += sign;
    if (this.enabled[i]) this.enabledCount += sign;
    if (this.limitDevicesTotal[i]! > 0) this.deviceHostCount += sign;
  }

  /** Copies `hosts` into fresh arrays and builds the index. */
  private load_(hosts: readonly HostSnapshot[]): void {
    const n = hosts.length;
    this.size = n;
    this.ids = hosts.map((h) => h.id);
    this.slotOf = new Map(this.ids.map((id, i) => [id, i]));
    if (this.slotOf.size !== n) throw new Error("duplicate host ids in snapshot");
    this.kinds = hosts.map((h) => h.kind);
    this.kindOf = new Map([...new Set(this.kinds)].map((k, i) => [k, i]));
    const models = new Set<string>();
    for (const h of hosts) {
      for (const m in h.limitDevices) models.add(m);
      for (const m in h.freeDevices) models.add(m);
    }
    this.models = [...models];
    this.modelOf = new Map(this.models.map((m, i) => [m, i]));
    this.freeDevices = this.models.map(() => new Int32Array(n));
    this.limitDevices = this.models.map(() => new Int32Array(n));
    this.states = new Array(n);
    this.labels = new Array(n);
    this.kind = new Int32Array(n);
    this.present = new Uint8Array(n);
    this.enabled = new Uint8Array(n);
    this.idRank = new Int32Array(n);
    for (const name of ["limitVcpus", "freeVcpus", "limitMemoryMiB", "freeMemoryMiB", "load"] as const)
      this[name] = new Float64Array(n);
    this.limitDevicesTotal = new Float64Array(n);
    this.freeDevicesTotal = new Float64Array(n);
    this.presentCount = this.enabledCount = this.deviceHostCount = 0;
    this.members = new Members(n);
    [...this.ids.keys()]
      .sort((a, b) => (this.ids[a]! < this.ids[b]! ? -1 : 1))
      .forEach((slot, rank) => {
        this.idRank[slot] = rank;
      });
    this.index = new MemoryIndex(this.kindOf.size, n, this.freeMemoryMiB, this.kind);
    hosts.forEach((h, i) => {
      this.fill(i, h);
      this.count(i, 1);
    });
    this.index.build([...this.ids.keys()].filter((i) => this.enabled[i]));
  }

  /** Writes one host's fields into slot `i` (not the index, not the counts). */
  private fill(i: number, h: HostSnapshot): void {
    this.kinds[i] = h.kind;
    this.kind[i] = this.kindOf.get(h.kind)!;
    this.states[i] = h.state;
    this.labels[i] = h.labels;
    this.present[i] = 1;
    this.enabled[i] = h.state === "enabled" ? 1 : 0;
    this.limitVcpus[i] = h.limitVcpus;
    this.freeVcpus[i] = h.freeVcpus;
    this.limitMemoryMiB[i] = h.limitMemoryMiB;
    this.freeMemoryMiB[i] = h.freeMemoryMiB;
    this.load[i] = h.load ?? Number.NaN;
    let limitTotal = 0;
    let freeTotal = 0;
    this.models.forEach((model, m) => {
      const free = h.freeDevices[model] ?? 0;
      const limit = h.limitDevices ? (h.limitDevices[model] ?? 0) : free;
      this.freeDevices[m]![i] = free;
      this.limitDevices[m]![i] = limit;
      freeTotal += free;
      limitTotal += limit;
    });
    this.freeDevicesTotal[i] = freeTotal;
    this.limitDevicesTotal[i] = limitTotal;
    this.members.set(i, h.vmIds ?? [], h.groups ?? []);
  }
}
