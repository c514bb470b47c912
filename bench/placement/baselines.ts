/**
 * The placement-quality baselines, written here rather than taken from the scheduler so that the
 * comparison does not depend on it: First-fit and Best-fit as the FGD paper (USENIX ATC 2023) runs
 * them on the same trace. Both see only capacity (state, vCPUs, memory, devices), all a trace asks.
 */
import type { Snapshot } from "../../shared/scheduler/pipeline.ts";
import type { Strategy } from "./replay.ts";

function open(s: Snapshot, i: number): boolean {
  return s.present[i] === 1 && s.enabled[i] === 1;
}

/** The first host, in the order of the node list, with room for the demand. */
export const firstFit: Strategy = {
  name: "first-fit",
  choose(s, d) {
    for (let i = 0; i < s.size; i++) if (open(s, i) && s.fits(i, d)) return s.ids[i];
    return undefined;
  },
};

/**
 * The host left with the least after placing: ½ × vCPUs left / the largest host's vCPUs + ½ × GPUs
 * left / the largest host's GPUs, memory not counted (the FGD simulator's `BestFitScore`). Ties go to
 * the earlier host in the node list.
 */
export const bestFit: Strategy = {
  name: "best-fit",
  choose(s, d) {
    let maxVcpus = 0;
    let maxDevices = 0;
    for (let i = 0; i < s.size; i++) {
      if (!s.present[i]) continue;
      maxVcpus = Math.max(maxVcpus, s.limitVcpus[i]!);
      maxDevices = Math.max(maxDevices, s.limitDevicesTotal[i]!);
    }
    let devices = 0;
    for (const model in d.devices) devices += d.devices[model]!;
    let best = -1;
    let bestLeft = Number.POSITIVE_INFINITY;
    for (let i = 0; i < s.size; i++) {
      if (!open(s, i) || !s.fits(i, d)) continue;
      const left =
        (0.5 * (s.freeVcpus[i]! - d.vcpus)) / maxVcpus +
        (maxDevices > 0 ? (0.5 * (s.freeDevicesTotal[i]! - devices)) / maxDevices : 0);
      if (left < bestLeft) {
        bestLeft = left;
        best = i;
      }
    }
    return best < 0 ? undefined : s.ids[best];
  },
};
