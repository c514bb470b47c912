/** What resource plugins need to know about a release batch that the batch does not say outright. */
import type { VmItem } from "../../store/items.ts";
import type { ReleaseBatch } from "../types.ts";

/**
 * True when the VM gives up its home host only to move to its migration's target: a migration that
 * succeeded (finishOperation releases the source), or an evacuation that re-homes a VM caught mid
 * migration on that target. It stays placed, so it keeps what it holds (address, quota charge).
 */
export function movesHome(batch: ReleaseBatch, vm: VmItem): boolean {
  return (
    batch.op?.action === "migrate" && vm.migrationHostId !== undefined && vm.migrationHostId !== vm.hostId
  );
}
