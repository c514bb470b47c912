/**
 * Gang placement: a virtual cluster's VMs are placed together, all or none. Members go largest first
 * (the hardest to fit choose while the most room is left), each applied to the snapshot before the
 * next is placed, so group constraints hold across the members: give every member the same
 * `antiAffinityGroup` to spread them, or the same `affinityGroup` to keep them on one host.
 */
import { placeOne } from "./pipeline.ts";
import type { Policy } from "./policy.ts";
import type { Registry } from "./registry.ts";
import type { Snapshot } from "./snapshot.ts";
import type { Demand, Rejections } from "./types.ts";

/** Either a host for every member (by the members' order), or the member that could not be placed and why. */
export type GangResult =
  | { assignments: string[] }
  | { failed: number; rejections: Rejections; considered: number };

/** Larger first: devices are the scarcest, then memory, then vCPUs; equal members keep their order. */
export function largestFirst(demands: readonly Demand[]): number[] {
  const devices = demands.map((d) => Object.values(d.devices).reduce((a, n) => a + n, 0));
  return demands
    .map((_, i) => i)
    .sort(
      (a, b) =>
        devices[b]! - devices[a]! ||
        demands[b]!.memoryMiB - demands[a]!.memoryMiB ||
        demands[b]!.vcpus - demands[a]!.vcpus ||
        a - b,
    );
}

/**
 * The demand that chooses the host for the first member of a hard-affinity group: the whole group's
 * amounts, so the host chosen can take every member (they will all have to go there).
 */
export function groupDemand(snapshot: Snapshot, demands: readonly Demand[], i: number): Demand {
  const d = demands[i]!;
  const group = d.affinityGroup;
  if (group === undefined || snapshot.members.groupHosts.has(group)) return d;
  const members = demands.filter((m) => m.affinityGroup === group);
  if (members.length === 1) return d;
  const devices: Record<string, number> = {};
  for (const m of members)
    for (const [model, n] of Object.entries(m.devices)) devices[model] = (devices[model] ?? 0) + n;
  return {
    ...d,
    vcpus: members.reduce((a, m) => a + m.vcpus, 0),
    memoryMiB: members.reduce((a, m) => a + m.memoryMiB, 0),
    devices,
  };
}

/**
 * Places every demand or none. On success the snapshot holds all of them; on failure it is exactly as
 * it was, and the result names the first member (by its index in `demands`) that found no host.
 */
export function placeGang(
  snapshot: Snapshot,
  demands: readonly Demand[],
  policy: Policy,
  registry?: Registry,
): GangResult {
  const assignments: string[] = new Array(demands.length);
  const applied: number[] = [];
  let done = false;
  try {
    for (const i of largestFirst(demands)) {
      const result = placeOne(snapshot, groupDemand(snapshot, demands, i), policy, registry);
      if (result.hostId === undefined)
        return { failed: i, rejections: result.rejections, considered: result.considered };
      snapshot.apply(result.hostId, demands[i]!);
      applied.push(i);
      assignments[i] = result.hostId;
    }
    done = true;
    return { assignments };
  } finally {
    // All or none: undo in reverse so every counter and group returns to where it was.
    if (!done) for (const i of applied.reverse()) snapshot.release(assignments[i]!, demands[i]!);
  }
}
