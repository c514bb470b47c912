/**
 * Placement on the full site: the scheduler's handler (scheduleOperation) placing one more VM, timed
 * from the operation's message to the command sent, in a control plane of this process. Cold: the
 * first placement of a control plane, which reads every host of the site into its host cache; warm:
 * the next ones, decided over the cache (shared/services/host-cache.ts).
 */
import type { Principal } from "../../shared/auth/principal.ts";
import type { Deps } from "../../shared/services/context.ts";
import { scheduleOperation } from "../../shared/services/scheduling.ts";
import { createVm, getVmItem } from "../../shared/services/vms.ts";
import type { BenchBed } from "../lib/bed.ts";
import { SCALE_PROJECT } from "./site.ts";

const principal: Principal = { subject: "bench", project: SCALE_PROJECT, roles: ["admin"] };

let made = 0;

/** Creates a VM (not timed) and times the scheduler's handling of its start; checks it was placed. */
async function placeOne(deps: Deps, site: string): Promise<number> {
  const n = made++;
  const requestId = `req-scale-place-${n}`;
  const created = await createVm(
    deps,
    { principal, requestId },
    { name: `placed-${n}`, site, vcpus: 2, memoryMiB: 4096 },
  );
  const { vm, operation } = created.body as { vm: { id: string }; operation: { id: string } };
  const t0 = performance.now();
  await scheduleOperation(deps, { opId: operation.id, requestId });
  const ms = performance.now() - t0;
  const placed = await getVmItem(deps, vm.id);
  if (!placed?.hostId) throw new Error(`VM ${vm.id} was not placed`);
  return ms;
}

/** `cold` first placements (a new control plane each) and `warm` placements after each. */
export async function measurePlacement(
  bed: BenchBed,
  site: string,
  runs: { cold: number; warm: number },
): Promise<{ coldMs: number[]; warmMs: number[]; siteReads: number }> {
  const coldMs: number[] = [];
  const warmMs: number[] = [];
  let siteReads = 0;
  for (let c = 0; c < runs.cold; c++) {
    // The default cache age (2 s) would expire between placements whose VM creation the section
    // does not time; a minute keeps the warm ones warm, as a busy scheduler's would be.
    const { deps } = await bed.controlPlane({ extraEnv: { USHER_HOST_CACHE_MS: "60000" } });
    coldMs.push(await placeOne(deps, site));
    for (let w = 0; w < runs.warm; w++) warmMs.push(await placeOne(deps, site));
    siteReads += deps.hostCache?.reads ?? 0;
    deps.db.doc.destroy();
    deps.queues.sqs.destroy();
  }
  return { coldMs, warmMs, siteReads };
}
