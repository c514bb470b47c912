/**
 * Placement with a claim: the policy's pipeline chooses a host over a snapshot of the site, then a
 * conditional transaction claims it. The decision is pure and fast; the claim is what makes it true.
 */
import type { HypervisorKind } from "../contracts/common.ts";
import { ConflictError, ErrorCode, UsherError } from "../errors.ts";
import { contributionVerdict, joinContributions, vmChanges } from "../plugins/contributions.ts";
import { explain, placeOne } from "../scheduler/pipeline.ts";
import { getItem, type TxItem, transact, updateOf } from "../store/base.ts";
import { failedConditions, isTransactionConflict } from "../store/errors.ts";
import type { ClaimItem, ClusterItem, HostItem, OpItem, VmItem } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import { claimItems } from "./capacity.ts";
import type { Deps } from "./context.ts";
import { getHostItem } from "./hosts.ts";
import { allowedHostsOf, demandOf, loadSnapshot, policyFor, refreshHost } from "./site-snapshot.ts";
import { getVmItem } from "./vms.ts";

const MAX_ATTEMPTS = 25;
/** How long a placement waits for this process's claims in flight before deciding without them. */
const BUSY_WAIT_MS = 2_000;
/** How long a process leaves a host to the scheduler that beat it to a claim there. */
const CONTENDED_MS = 200;

export type PlaceOptions = {
  /** Which VM field records the claimed host: `hostId`, or `migrationHostId` for a migration target. */
  field: "hostId" | "migrationHostId";
  /** Only this host (admin's targetHostId). */
  only?: string | undefined;
  /** Never this host (the migration source). */
  exclude?: string | undefined;
  /** Only hosts of this hypervisor kind (a migration stays on the source's kind). */
  kind?: HypervisorKind | undefined;
  /** The VM's cluster, when the caller has read it already (its policy applies). */
  cluster?: ClusterItem | undefined;
  /**
   * Records the dispatch in the claim's own transaction: `vmSet` joins the VM's update (its
   * transitional state), `items` (the operation's and event's writes, not the VM's) join the rest.
   */
  dispatch?: {
    vmSet: Record<string, unknown>;
    items(host: HostItem, vm: VmItem): Promise<TxItem[]>;
  };
};

/**
 * Claims capacity for `vm` on the best host of its site, under the policy for its cluster or project,
 * and records it on the VM, atomically. A stale snapshot shows up as a failed condition: that host is
 * re-read into the snapshot and the pipeline runs again, so concurrent schedulers never over-commit
 * and only fail with `no_capacity` (saying, per filter, how many hosts it rejected and why) when
 * nothing fits.
 *
 * Hard constraints on other hosts (affinity, same host) see only the hosts `only` and `exclude` leave:
 * a migration moves one member of a hard-affinity group away from it, which is what was asked.
 */
/**
 * Where a VM was placed, and the VM as its claim left it; `dispatched` when the caller's dispatch
 * writes committed with the claim (not when a concurrent handler had placed it already).
 */
export type Placed = { host: HostItem; vm: VmItem; dispatched: boolean; movedOn?: boolean };

export async function place(deps: Deps, vm: VmItem, op: OpItem, opts: PlaceOptions): Promise<Placed> {
  const demand = demandOf(vm, opts.kind ?? vm.spec.hypervisor);
  const cluster =
    opts.cluster ??
    (vm.clusterId ? await getItem<ClusterItem>(deps.db, keys.cluster(vm.clusterId)) : undefined);
  const { name, policy, registry } = policyFor(deps, { cluster: cluster?.policy, project: vm.project });
  const allowed = allowedHostsOf(op);
  // Hosts this process is claiming on, or lost a race for lately, are left out while there is time to
  // wait for them, never after.
  const cache = deps.hostCache;
  let avoidBusy = cache !== undefined;
  const keep = (h: HostItem) =>
    (!opts.only || h.id === opts.only) &&
    h.id !== opts.exclude &&
    (!allowed || allowed.has(h.id)) &&
    !(avoidBusy && cache?.avoid(vm.site, h.id));
  const read = (fresh: boolean) =>
    loadSnapshot(deps, vm.site, {
      project: vm.project,
      demands: [demand],
      except: new Set([vm.id]),
      keep,
      fresh,
    });
  let site = await read(false);
  const waitUntil = Date.now() + BUSY_WAIT_MS;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const result = placeOne(site.snapshot, demand, policy, registry);
    const best = result.hostId === undefined ? undefined : site.hosts.get(result.hostId);
    if (Date.now() >= waitUntil) avoidBusy = false;
    if (best && avoidBusy && cache?.avoid(vm.site, best.id)) {
      // Another placement of this process started claiming it since the snapshot was made: decide
      // again without it (no new snapshot; dropping one host is cheap, building 1,000 is not).
      attempt--;
      site.snapshot.remove(best.id);
      site.hosts.delete(best.id);
      continue;
    }
    if (!best && avoidBusy && cache?.avoided(vm.site)) {
      // Perhaps only hosts this process is claiming on would fit: if so, wait for those claims.
      avoidBusy = false;
      const withBusy = await read(false);
      const fits = placeOne(withBusy.snapshot, demand, policy, registry).hostId !== undefined;
      avoidBusy = fits;
      if (fits) {
        attempt--;
        await new Promise((r) => setTimeout(r, 2 + Math.random() * 8));
        site = await read(false);
        continue;
      }
      site = withBusy;
    }
    if (!best && (!site.fresh || avoidBusy)) {
      avoidBusy = false;
      // Decided over the process's cached hosts: "nothing fits" is said only of the site as it is now.
      site = await read(true);
      continue;
    }
    if (!best) {
      const where = opts.only ? ` (target host ${opts.only} in site ${vm.site})` : ` in site ${vm.site}`;
      const narrowed = allowed ? `, among the hosts site policy allows (${[...allowed].join(", ")})` : "";
      throw new UsherError(ErrorCode.noCapacity, `${explain(result)}${where}${narrowed}`, {
        details: {
          considered: result.considered,
          rejections: result.rejections,
          policy: name,
          ...(allowed ? { allowedHosts: [...allowed] } : {}),
        },
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
    const vmSet = { ...extra.set, ...opts.dispatch?.vmSet, [opts.field]: best.id };
    // The VM as the claim leaves it (its host, the plugins' fields such as the address): no re-read.
    const placed: VmItem = { ...vm, ...vmSet, version: vm.version + 1 };
    for (const f of extra.remove) delete (placed as Record<string, unknown>)[f];
    const dispatchItems = opts.dispatch ? await opts.dispatch.items(best, placed) : [];
    const own: TxItem[] = [
      ...claimItems(deps, best, claim),
      {
        // The VM takes one claim per role: a concurrent handler of this same operation cannot add a second.
        Update: updateOf(
          deps.db.table,
          keys.vm(vm.id),
          { set: { ...vmSet, updatedAt: claim.createdAt }, remove: extra.remove, inc: { version: 1 } },
          {
            expr: `attribute_not_exists(#f) AND doneSeq = :prev`,
            names: { "#f": opts.field },
            values: { ":prev": op.seq - 1 },
          },
        ),
      },
      ...dispatchItems,
    ];
    const joined = joinContributions(own, contributions);
    const ended = deps.hostCache?.begin(vm.site, best.id);
    try {
      await transact(deps.db, joined.items);
      ended?.();
      deps.hostCache?.claimed(vm.site, best.id, claim);
      deps.log.info("capacity claimed", {
        opId: op.id,
        requestId: op.requestId,
        vmId: vm.id,
        hostId: best.id,
        attempt,
      });
      return { host: best, vm: placed, dispatched: opts.dispatch !== undefined };
    } catch (err) {
      ended?.();
      const failed = failedConditions(err) ?? [];
      const verdict = contributionVerdict(joined, contributions, failed);
      if (verdict instanceof UsherError) throw verdict;
      if (verdict === "retry" && !failed.some((i) => i < own.length)) continue;
      if (failed.some((i) => i >= 3 && i < own.length) && !failed.some((i) => i < 3)) {
        // The caller's dispatch writes: the operation moved on (another handler, the sweep).
        deps.log.debug("operation moved on while placing", { opId: op.id });
        return { host: best, vm, dispatched: false, movedOn: true };
      }
      if (failed.includes(1) || failed.includes(2)) {
        const now = await getVmItem(deps, vm.id);
        const placed = now?.[opts.field];
        const host = placed ? await getHostItem(deps, placed) : undefined;
        if (now && host) return { host, vm: now, dispatched: false };
        throw err;
      }
      if (failed.includes(0) || isTransactionConflict(err)) {
        // Another scheduler got there first (or our snapshot of this host was stale): leave the host to
        // it for a moment, refresh it, and decide again.
        deps.hostCache?.contend(vm.site, best.id, CONTENDED_MS);
        await refreshHost(deps, vm.site, site, best.id, keep);
        // Another transaction on the same items (a host, a project's quota): back off, with jitter.
        if (isTransactionConflict(err))
          await new Promise((r) => setTimeout(r, (5 << Math.min(attempt, 5)) * (0.5 + Math.random())));
        continue;
      }
      throw err;
    }
  }
  // Not "no capacity": something may well fit. The caller tries afresh later (see scheduling.ts).
  throw new ConflictError(
    ErrorCode.conflict,
    `could not claim capacity after ${MAX_ATTEMPTS} attempts under contention; will retry`,
  );
}
