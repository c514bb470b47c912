/**
 * Gang placement for virtual clusters: a cluster's members are placed together, all or none. The
 * first scheduler to handle any member's first start decides for all of them over one snapshot and
 * claims everything in one transaction, which also records the outcome on the cluster; a concurrent
 * handler of another member loses that conditional write, re-reads the record and follows it. When
 * nothing fits, the failure (with the pipeline's per-filter explanation) is recorded instead, and
 * every member's first start fails with it.
 */
import type { ErrorInfo } from "../contracts/common.ts";
import { ConflictError, ErrorCode, UsherError } from "../errors.ts";
import { contributionVerdict, joinContributions, vmChanges } from "../plugins/contributions.ts";
import type { Contribution } from "../plugins/types.ts";
import { placeGang } from "../scheduler/gang.ts";
import { explain } from "../scheduler/pipeline.ts";
import { getItem, type TxItem, transact, updateOf } from "../store/base.ts";
import { failedConditions, isTransactionConflict } from "../store/errors.ts";
import type { ClaimItem, ClusterItem, HostItem, OpItem, VmItem } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import { claimItems } from "./capacity.ts";
import type { Deps } from "./context.ts";
import { eventItem } from "./events.ts";
import { getHostItem } from "./hosts.ts";
import { place } from "./place.ts";
import {
  allowedHostsOf,
  demandOf,
  loadSnapshot,
  policyFor,
  refreshHost,
  type SiteSnapshot,
} from "./site-snapshot.ts";
import { getVmItem } from "./vms.ts";

const MAX_ATTEMPTS = 25;
/** DynamoDB's limit on the items of one transaction. */
const MAX_TX_ITEMS = 100;

/** Whether `op` is the first start of a member of `cluster`, which the cluster's gang decides. */
export function isGangStart(
  cluster: ClusterItem | undefined,
  vm: VmItem,
  op: OpItem,
): cluster is ClusterItem {
  return cluster?.gang?.ops[vm.id] === op.id;
}

export async function getClusterItem(deps: Deps, id: string): Promise<ClusterItem | undefined> {
  return getItem<ClusterItem>(deps.db, keys.cluster(id));
}

/**
 * The host of `vm`, a member of `cluster` being started for the first time: places the whole cluster
 * if no scheduler has yet, then follows the recorded outcome. Throws the recorded failure (the same
 * for every member) when the cluster could not be placed.
 */
export async function placeGangMember(
  deps: Deps,
  cluster: ClusterItem,
  vm: VmItem,
  op: OpItem,
): Promise<{ vm: VmItem; host: HostItem }> {
  let c = cluster;
  const state: Attempt = { site: undefined };
  for (let attempt = 0; ; attempt++) {
    const gang = c.gang!;
    if (gang.status === "failed") {
      const e = gang.error ?? { code: ErrorCode.noCapacity, message: "the cluster could not be placed" };
      throw new UsherError(e.code as ErrorCode, e.message, e.details ? { details: e.details } : undefined);
    }
    if (gang.status === "placed") {
      const now = (await getVmItem(deps, vm.id)) ?? vm;
      const host = now.hostId ? await getHostItem(deps, now.hostId) : undefined;
      if (host) return { vm: now, host };
      // Placed, yet this member holds no host (it cannot lose it before its first start ends): alone, then.
      return place(deps, now, op, { field: "hostId", cluster: c });
    }
    if (attempt >= MAX_ATTEMPTS) {
      // Contention, not "no capacity": the gang stays pending and this start's message is delivered
      // again, so the placement is tried afresh later (a member's start that runs out of time fails
      // the gang then, with its reason).
      throw new ConflictError(
        ErrorCode.conflict,
        `could not decide cluster ${c.name}'s placement after ${MAX_ATTEMPTS} attempts under contention; will retry`,
      );
    }
    await decide(deps, c, op, state);
    const fresh = await getClusterItem(deps, c.id);
    if (!fresh?.gang) throw new UsherError(ErrorCode.invalidState, `cluster ${c.id} is gone`);
    c = fresh;
  }
}

/** What one handler keeps between its attempts: the site as last read, refreshed where claims failed. */
type Attempt = { site: SiteSnapshot | undefined; fresh?: boolean };

/**
 * One attempt at deciding a pending gang: records it placed (claims and all) or failed, or returns
 * having changed nothing when a concurrent writer got in first or the snapshot was stale. The caller
 * re-reads the cluster either way.
 */
async function decide(deps: Deps, c: ClusterItem, op: OpItem, state: Attempt): Promise<void> {
  // In creation order (a stored map keeps none), so equal members are placed, and named, in turn.
  const ops = c.gang!.ops;
  const ids = [
    ...c.vmIds.filter((id) => Object.hasOwn(ops, id)),
    ...Object.keys(ops).filter((id) => !c.vmIds.includes(id)),
  ];
  const members = await Promise.all(ids.map((id) => getVmItem(deps, id)));
  // A member whose first start already ended without a host (deadline, deleted) fails them all.
  const at = members.findIndex((m) => !m || (m.doneSeq > 0 && !m.hostId));
  if (at >= 0) {
    const ended = ids[at]!;
    const name = members[at]?.name ?? ended;
    return recordFailure(deps, c, op, {
      code: ErrorCode.invalidState,
      message: `member ${name} of cluster ${c.name} ended its start before the cluster was placed; no member was placed`,
      details: { member: ended },
    });
  }
  // Members that hold a host already (none should while the gang is pending) keep it.
  const vms = (members as VmItem[]).filter((m) => !m.hostId);
  const demands = vms.map((m) => demandOf(m));
  const { name: policyName, policy, registry } = policyFor(deps, { cluster: c.policy, project: c.project });
  // Every member's first start came from one request, so site policy narrowed their hosts alike.
  const allowed = allowedHostsOf(op);
  state.site ??= await loadSnapshot(deps, c.site, {
    project: c.project,
    demands,
    except: new Set(ids),
    fresh: state.fresh,
    ...(allowed ? { keep: (h: HostItem) => allowed.has(h.id) } : {}),
  });
  const site = state.site;
  const r = placeGang(site.snapshot, demands, policy, registry);
  if ("failed" in r && !site.fresh) {
    // Decided over the process's cached hosts: decide again on the site as it is now.
    state.site = undefined;
    state.fresh = true;
    return;
  }
  if ("failed" in r) {
    const m = vms[r.failed]!;
    return recordFailure(deps, c, op, {
      code: ErrorCode.noCapacity,
      message: `cluster ${c.name}: no member was placed, as member ${m.name} fits no host: ${explain(r)} in site ${c.site}`,
      details: { considered: r.considered, rejections: r.rejections, member: m.id, policy: policyName },
    });
  }
  // From here the snapshot holds the gang: undo it before deciding again on a fresh read.
  const undo = () => {
    for (let i = vms.length - 1; i >= 0; i--) site.snapshot.release(r.assignments[i]!, demands[i]!);
  };
  const placements = vms.map((vm, i) => ({ vm, host: site.hosts.get(r.assignments[i]!)! }));
  let contributions: Contribution[];
  try {
    contributions = await deps.plugins.claim(deps, { op, field: "hostId", placements });
  } catch (err) {
    // A resource plugin refused (quota, addresses): the whole cluster fails with its reason.
    if (err instanceof UsherError) return recordFailure(deps, c, op, err.toInfo());
    throw err;
  }
  const now = deps.now().toISOString();
  const claims: ClaimItem[] = placements.map(({ vm, host }, i) => ({
    type: "claim",
    hostId: host.id,
    vmId: vm.id,
    opId: c.gang!.ops[vm.id]!,
    vcpus: demands[i]!.vcpus,
    memoryMiB: demands[i]!.memoryMiB,
    devices: demands[i]!.devices,
    createdAt: now,
  }));
  const hostIds = [...new Set(claims.map((cl) => cl.hostId))];
  const own: TxItem[] = [
    {
      // Decided once: whichever handler writes this first places the gang; the others follow it.
      Update: updateOf(
        deps.db.table,
        keys.cluster(c.id),
        { set: { "gang.status": "placed", "gang.decidedAt": now } },
        {
          expr: "#g.#s = :pending",
          names: { "#g": "gang", "#s": "status" },
          values: { ":pending": "pending" },
        },
      ),
    },
    eventItem(deps, {
      subjectPk: keys.cluster(c.id).pk,
      project: c.project,
      type: "cluster.placed",
      requestId: op.requestId,
      opId: op.id,
      data: { policy: policyName, hosts: Object.fromEntries(claims.map((cl) => [cl.vmId, cl.hostId])) },
    }),
    // One update per host with its members' amounts summed: a transaction touches an item once.
    ...hostIds.map(
      (h) => claimItems(deps, site.hosts.get(h)!, sumClaims(claims.filter((cl) => cl.hostId === h)))[0]!,
    ),
    // One claim per member (it must not exist yet), each under the member's own first start.
    ...claims.map((cl) => claimItems(deps, { id: cl.hostId }, cl)[1]!),
    ...placements.map(({ vm, host }) => {
      const extra = vmChanges(contributions, vm.id);
      return {
        // Placed once, before its first start ended: never a second host, never after a failure.
        Update: updateOf(
          deps.db.table,
          keys.vm(vm.id),
          { set: { ...extra.set, hostId: host.id }, remove: extra.remove, inc: { version: 1 } },
          { expr: "attribute_not_exists(hostId) AND doneSeq = :zero", values: { ":zero": 0 } },
        ),
      };
    }),
  ];
  const joined = joinContributions(own, contributions);
  if (joined.items.length > MAX_TX_ITEMS) {
    return recordFailure(deps, c, op, {
      code: ErrorCode.pluginFailed,
      message: `placing cluster ${c.name} takes ${joined.items.length} writes with the plugins' own, more than one transaction holds (${MAX_TX_ITEMS}); no member was placed`,
    });
  }
  const firstHost = 2;
  const firstVm = firstHost + hostIds.length + claims.length;
  try {
    await transact(deps.db, joined.items);
    for (const cl of claims) deps.hostCache?.claimed(c.site, cl.hostId, cl);
    deps.log.info("cluster placed", {
      opId: op.id,
      requestId: op.requestId,
      clusterId: c.id,
      members: claims.length,
      hosts: hostIds.length,
    });
    return;
  } catch (err) {
    undo();
    const failed = failedConditions(err) ?? [];
    const verdict = contributionVerdict(joined, contributions, failed);
    if (verdict instanceof UsherError) {
      if (failed.some((i) => i < own.length)) return; // ours failed too: read again first
      return recordFailure(deps, c, op, verdict.toInfo());
    }
    // Decided meanwhile, or a member moved on: the caller re-reads.
    if (failed.includes(0) || failed.some((i) => i >= firstVm && i < own.length)) return;
    const stale = failed.filter((i) => i >= firstHost && i < firstHost + hostIds.length);
    if (stale.length || isTransactionConflict(err)) {
      const again = stale.length ? stale.map((i) => hostIds[i - firstHost]!) : hostIds;
      for (const h of again) await refreshHost(deps, c.site, site, h);
      if (isTransactionConflict(err)) await new Promise((res) => setTimeout(res, 5 + Math.random() * 30));
      return;
    }
    if (verdict === "retry") return;
    throw err;
  }
}

/** One claim's worth of amounts for several claims on one host (only the host update uses it). */
function sumClaims(claims: ClaimItem[]): ClaimItem {
  const devices: Record<string, number> = {};
  for (const cl of claims)
    for (const [model, n] of Object.entries(cl.devices)) devices[model] = (devices[model] ?? 0) + n;
  return {
    ...claims[0]!,
    vcpus: claims.reduce((a, cl) => a + cl.vcpus, 0),
    memoryMiB: claims.reduce((a, cl) => a + cl.memoryMiB, 0),
    devices,
  };
}

/**
 * Records the gang as failed, for every member, unless it was decided meanwhile (then the record
 * stands, and the caller follows it).
 */
async function recordFailure(deps: Deps, c: ClusterItem, op: OpItem, error: ErrorInfo): Promise<void> {
  const now = deps.now().toISOString();
  try {
    await transact(deps.db, [
      {
        // Decided once: a failure never overwrites a placement, nor another failure.
        Update: updateOf(
          deps.db.table,
          keys.cluster(c.id),
          { set: { "gang.status": "failed", "gang.error": error, "gang.decidedAt": now } },
          {
            expr: "#g.#s = :pending",
            names: { "#g": "gang", "#s": "status" },
            values: { ":pending": "pending" },
          },
        ),
      },
      eventItem(deps, {
        subjectPk: keys.cluster(c.id).pk,
        project: c.project,
        type: "cluster.placement_failed",
        requestId: op.requestId,
        opId: op.id,
        data: { error },
      }),
    ]);
    deps.log.info("cluster placement failed", {
      opId: op.id,
      requestId: op.requestId,
      clusterId: c.id,
      error,
    });
  } catch (err) {
    if (failedConditions(err)?.includes(0) || isTransactionConflict(err)) return;
    throw err;
  }
}
