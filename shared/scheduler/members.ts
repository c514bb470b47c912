/**
 * Who is where in a snapshot: VM ids and group members by slot, for the same-host, different-host
 * and (anti-)affinity constraints. Kept apart from the capacity arrays because it changes only when
 * a demand names a VM or a group.
 */
import type { Demand } from "./types.ts";

export class Members {
  /** Group → slot → members of the group on that slot. Empty inner maps are deleted. */
  readonly groupHosts = new Map<string, Map<number, number>>();
  /** VM id → the slot it was last recorded on. */
  readonly vmHost = new Map<string, number>();
  private readonly vms: string[][];
  private readonly groups: string[][];

  constructor(slots: number) {
    this.vms = Array.from({ length: slots }, () => []);
    this.groups = Array.from({ length: slots }, () => []);
  }

  vmsOn(i: number): readonly string[] {
    return this.vms[i]!;
  }
  groupsOn(i: number): readonly string[] {
    return this.groups[i]!;
  }

  /** Records a placed demand's VM id and the groups it is a member of. */
  add(i: number, d: Demand): void {
    if (d.vmId !== undefined) this.addVm(i, d.vmId);
    // Three plain ifs rather than a list: this runs once per decision in a replay.
    if (d.affinityGroup !== undefined) this.join(i, d.affinityGroup);
    if (d.antiAffinityGroup !== undefined) this.join(i, d.antiAffinityGroup);
    if (d.softAffinityGroup !== undefined) this.join(i, d.softAffinityGroup);
  }

  /** Undoes `add(i, d)`. */
  remove(i: number, d: Demand): void {
    if (d.vmId !== undefined) {
      const vms = this.vms[i]!;
      const at = vms.indexOf(d.vmId);
      if (at >= 0) vms.splice(at, 1);
      if (this.vmHost.get(d.vmId) === i) this.vmHost.delete(d.vmId);
    }
    if (d.affinityGroup !== undefined) this.leave(i, d.affinityGroup);
    if (d.antiAffinityGroup !== undefined) this.leave(i, d.antiAffinityGroup);
    if (d.softAffinityGroup !== undefined) this.leave(i, d.softAffinityGroup);
  }

  /** Replaces everything recorded on slot `i`. */
  set(i: number, vmIds: readonly string[], groups: readonly string[]): void {
    this.clear(i);
    for (const vm of vmIds) this.addVm(i, vm);
    for (const g of groups) this.join(i, g);
  }

  clear(i: number): void {
    // Most slots hold nothing: no copies, no new arrays for them.
    if (this.groups[i]!.length) for (const g of [...this.groups[i]!]) this.leave(i, g);
    if (!this.vms[i]!.length) return;
    for (const vm of this.vms[i]!) if (this.vmHost.get(vm) === i) this.vmHost.delete(vm);
    this.vms[i] = [];
  }

  private addVm(i: number, vm: string): void {
    this.vmHost.set(vm, i);
    this.vms[i]!.push(vm);
  }

  private join(i: number, group: string): void {
    let hosts = this.groupHosts.get(group);
    if (!hosts) {
      hosts = new Map();
      this.groupHosts.set(group, hosts);
    }
    hosts.set(i, (hosts.get(i) ?? 0) + 1);
    this.groups[i]!.push(group);
  }

  private leave(i: number, group: string): void {
    const hosts = this.groupHosts.get(group);
    const n = hosts?.get(i) ?? 0;
    if (!hosts || n === 0) return;
    if (n > 1) hosts.set(i, n - 1);
    else hosts.delete(i);
    if (hosts.size === 0) this.groupHosts.delete(group);
    const list = this.groups[i]!;
    list.splice(list.indexOf(group), 1);
  }
}
