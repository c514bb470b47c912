/** Placement with a claim: rank the site's hosts, then claim the best with a conditional transaction. */
import type { HypervisorKind } from "../contracts/common.ts";
import { ErrorCode, UsherError } from "../errors.ts";
import { contributionVerdict, joinContributions, vmChanges } from "../plugins/contributions.ts";
import { type Demand, explain, type HostSnapshot, rank } from "../scheduler/placement.ts";
import { transact, updateOf } from "../store/base.ts";
import { failedConditions, isTransactionConflict } from "../store/errors.ts";
import type { ClaimItem, HostItem, OpItem, VmItem } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import { claimItems } from "./capacity.ts";
import type { Deps } from "./context.ts";
import { getHostItem, siteHosts } from "./hosts.ts";
import { getVmItem } from "./vms.ts";

const MAX_ATTEMPTS = 25;

export type PlaceOptions = {
  /** Which VM field records the claimed host: `hostId`, or `migrationHostId` for a migration target. */
  field: "hostId" | "migrationHostId";
  /** Only this host (admin's targetHostId). */
  only?: string | undefined;
  /** Never this host (the migration source). */
  exclude?: string | undefined;
  /** Only hosts of this hypervisor kind (a migration stays on the source's kind). */
  kind?: HypervisorKind | undefined;
};

/**
 * Claims capacity for `vm` on the best host of its site and records it on the VM, atomically.
 * A stale snapshot shows up as a failed condition: that host is re-read and ranking runs again, so
 * concurrent schedulers never over-commit and only fail with `no_capacity` when nothing fits.
 */
export async function place(deps: Deps, vm: VmItem, op: OpItem, opts: PlaceOptions): Promise<HostItem> {
  const demand: Demand = {
    vcpus: vm.spec.vcpus,
    memoryMiB: vm.spec.memoryMiB,
    devices: vm.spec.devices ?? {},
    hypervisor: opts.kind ?? vm.spec.hypervisor,
  };
  let hosts: HostItem[] = await siteHosts(deps, vm.site);
  if (opts.only) hosts = hosts.filter((h) => h.id === opts.only);
  const exclude = opts.exclude ? new Set([opts.exclude]) : undefined;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const placement = rank(hosts as HostSnapshot[], demand, exclude);
    const best = placement.candidates[0] as HostItem | undefined;
    if (!best) {
      const where = opts.only ? ` (target host ${opts.only} in site ${vm.site})` : ` in site ${vm.site}`;
      throw new UsherError(ErrorCode.noCapacity, `${explain(placement)}${where}`, {
        details: { considered: placement.considered, rejections: placement.rejections },
      });
    }
    const claim: ClaimItem = {
      type: "claim",
      hostId: best.id,
      vmId: vm.id,
      opId: op.id,
      vcpus: demand.vcpus,
      memoryMiB: demand.memoryMiB,
      devices: demand.devices,
      createdAt: deps.now().toISOString(),
    };
    // Resource plugins (addresses, quotas) add their writes to this same transaction: all or none.
    const contributions = await deps.plugins.claim(deps, {
      op,
      field: opts.field,
      placements: [{ vm, host: best }],
    });
    const extra = vmChanges(contributions, vm.id);
    const joined = joinContributions(
      [
        ...claimItems(deps, best, claim),
        {
          // The VM takes one claim per role: a concurrent handler of this same operation cannot add a second.
          Update: updateOf(
            deps.db.table,
            keys.vm(vm.id),
            { set: { ...extra.set, [opts.field]: best.id }, remove: extra.remove, inc: { version: 1 } },
            {
              expr: `attribute_not_exists(#f) AND doneSeq = :prev`,
              names: { "#f": opts.field },
              values: { ":prev": op.seq - 1 },
            },
          ),
        },
      ],
      contributions,
    );
    try {
      await transact(deps.db, joined.items);
      deps.log.info("capacity claimed", {
        opId: op.id,
        requestId: op.requestId,
        vmId: vm.id,
        hostId: best.id,
        attempt,
      });
      return best;
    } catch (err) {
      const failed = failedConditions(err) ?? [];
      const verdict = contributionVerdict(joined, contributions, failed);
      if (verdict instanceof UsherError) throw verdict;
      if (verdict === "retry" && !failed.some((i) => i < 3)) continue;
      if (failed.includes(1) || failed.includes(2)) {
        const placed = (await getVmItem(deps, vm.id))?.[opts.field];
        const host = placed ? await getHostItem(deps, placed) : undefined;
        if (host) return host;
        throw err;
      }
      if (failed.includes(0) || isTransactionConflict(err)) {
        // Our snapshot of this host was stale: refresh it and rank again.
        const fresh = await getHostItem(deps, best.id);
        hosts = hosts.flatMap((h) => (h.id !== best.id ? [h] : fresh ? [fresh] : []));
        if (isTransactionConflict(err)) await new Promise((r) => setTimeout(r, 5 + Math.random() * 20));
        continue;
      }
      throw err;
    }
  }
  throw new UsherError(
    ErrorCode.noCapacity,
    `could not claim capacity after ${MAX_ATTEMPTS} attempts under contention`,
  );
}
