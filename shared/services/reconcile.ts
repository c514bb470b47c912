/**
 * Reconciliation: compare what an agent reports is on a host with what the control plane recorded,
 * emit a drift event for every difference, and apply the site's drift policy. The control plane never
 * forces a power state on a host here: it only corrects its own records (or flags them), and leaves
 * unknown domains alone.
 *
 * Policy (`USHER_DRIFT_POLICY`):
 * - `adopt`: the host is the truth. A VM whose domain is in another power state takes that state; a
 *   VM whose domain is missing becomes `destroyed` and its capacity claim is released.
 * - `error`: the VM is marked `error` (its claim kept) until someone acts on it.
 * VMs with an operation in flight, or changed after the inventory was taken, are skipped: the
 * operation will report, and the next inventory compares again.
 */
import type { VmState } from "../contracts/common.ts";
import type { HostInventory, PowerState } from "../contracts/messages.ts";
import { vmChanges } from "../plugins/contributions.ts";
import { batchGetItems, itemKey, queryAll, type TxItem, transact, updateOf } from "../store/base.ts";
import { failedConditions } from "../store/errors.ts";
import type { ClaimItem, VmItem } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import { releaseItems } from "./capacity.ts";
import type { Deps } from "./context.ts";
import { eventItem, leftHomeData } from "./events.ts";

export type DriftPolicy = "adopt" | "error";
export type DriftKind = "missing" | "state_mismatch" | "unknown_domain";
export type Drift = {
  kind: DriftKind;
  hostId: string;
  vmId?: string;
  uuid?: string;
  recorded?: VmState;
  observed?: PowerState;
};

/** The power state a VM in `state` should show on its host; undefined when any state is acceptable. */
function expectedPower(state: VmState): PowerState | undefined {
  switch (state) {
    case "running":
    case "paused":
    case "suspended":
    case "stopped":
      return state;
    default:
      return undefined;
  }
}

/** Records changed this close to (or after) an inventory's time are left to the next inventory. */
export const SNAPSHOT_MARGIN_MS = 10_000;

const observedState = (p: PowerState): VmState => (p === "absent" ? "destroyed" : p);

/** What an inventory of a host is compared with: the host's claims and the VMs they name, by id. */
export type HostRecords = { claims: ClaimItem[]; vms: Map<string, VmItem> };

/** Hosts whose claims are queried at once. */
const QUERIES_AT_ONCE = 8;

/**
 * The records of several hosts: each host's claims (one query each, `QUERIES_AT_ONCE` at a time),
 * then every claimed VM in BatchGetItem calls of 100 keys (consistent reads, as getVmItem's), so a
 * part of an inventory (dozens of hosts, hundreds of VMs) costs a query per host and a few reads.
 */
export async function readHostRecords(
  deps: Deps,
  hostIds: readonly string[],
): Promise<Map<string, HostRecords>> {
  const claimsOf = new Map<string, ClaimItem[]>();
  await eachAtOnce(hostIds, QUERIES_AT_ONCE, async (hostId) => {
    claimsOf.set(
      hostId,
      await queryAll<ClaimItem>(deps.db, {
        KeyConditionExpression: "pk = :pk AND begins_with(sk, :claim)",
        ExpressionAttributeValues: { ":pk": keys.host(hostId).pk, ":claim": "CLAIM#" },
      }),
    );
  });
  const all = [...claimsOf.values()].flat();
  const read = await batchGetItems<VmItem>(
    deps.db,
    all.map((c) => keys.vm(c.vmId)),
  );
  const out = new Map<string, HostRecords>();
  for (const [hostId, claims] of claimsOf) {
    const vms = new Map<string, VmItem>();
    for (const c of claims) {
      const vm = read.get(itemKey(keys.vm(c.vmId)));
      if (vm) vms.set(vm.id, vm);
    }
    out.set(hostId, { claims, vms });
  }
  return out;
}

/**
 * Runs `fn` on every item, at most `limit` at once; every item is tried, then the first error (if
 * any) is thrown.
 */
export async function eachAtOnce<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>) {
  const errors: unknown[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        errors.push(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (errors.length) throw errors[0];
}

/**
 * Compares one host's inventory with its records (read here unless the caller read them with
 * `readHostRecords`, for many hosts at once), then writes, conditionally, each drift found. Returns
 * the drifts.
 */
export async function reconcileHost(
  deps: Deps,
  inv: HostInventory,
  at: string,
  records?: HostRecords,
): Promise<Drift[]> {
  if (!inv.reachable) return [];
  const drifts: Drift[] = [];
  const { claims, vms } = records ?? (await readHostRecords(deps, [inv.hostId])).get(inv.hostId)!;
  const claimed = new Set(claims.map((c) => c.vmId));
  const domains = new Map(inv.domains.filter((d) => d.vmId).map((d) => [d.vmId as string, d]));
  const placedHere = new Set<string>();
  for (const claim of claims) {
    const vm = vms.get(claim.vmId);
    if (!vm) continue;
    if (vm.hostId === inv.hostId) placedHere.add(vm.id);
    // A migration target's claim, an operation in flight, or a change near or after the snapshot
    // (the margin absorbs clock skew between agent and control plane): not drift.
    if (vm.hostId !== inv.hostId || vm.opSeq !== vm.doneSeq) continue;
    if (Date.parse(vm.updatedAt) > Date.parse(at) - SNAPSHOT_MARGIN_MS) continue;
    // Already flagged: under the error policy, nothing more to record until someone acts on it.
    if (vm.state === "error" && deps.config.driftPolicy === "error") continue;
    const domain = domains.get(vm.id);
    const expected = expectedPower(vm.state);
    if (!domain || domain.powerState === "absent") {
      drifts.push({ kind: "missing", hostId: inv.hostId, vmId: vm.id, recorded: vm.state });
      await apply(
        deps,
        vm,
        claim,
        { kind: "missing", hostId: inv.hostId, vmId: vm.id, recorded: vm.state },
        at,
      );
    } else if (expected && domain.powerState !== expected) {
      const drift: Drift = {
        kind: "state_mismatch",
        hostId: inv.hostId,
        vmId: vm.id,
        uuid: domain.uuid,
        recorded: vm.state,
        observed: domain.powerState,
      };
      drifts.push(drift);
      await apply(deps, vm, claim, drift, at);
    }
  }
  for (const d of inv.domains) {
    if (d.vmId && placedHere.has(d.vmId)) continue;
    // Usher did not make it, or it belongs to a VM recorded elsewhere (e.g. a migration's leftover).
    const drift: Drift = {
      kind: "unknown_domain",
      hostId: inv.hostId,
      uuid: d.uuid,
      observed: d.powerState,
      ...(d.vmId ? { vmId: d.vmId } : {}),
    };
    if (d.vmId && claimed.has(d.vmId)) continue; // a migration target in progress
    drifts.push(drift);
    await recordOnly(deps, drift);
  }
  if (drifts.length) deps.log.warn("drift", { hostId: inv.hostId, drifts });
  return drifts;
}

async function apply(deps: Deps, vm: VmItem, claim: ClaimItem, drift: Drift, at: string): Promise<void> {
  const policy = deps.config.driftPolicy;
  const now = deps.now().toISOString();
  const items: TxItem[] = [];
  let state: VmState;
  let remove: string[] = [];
  let extra: ReturnType<typeof vmChanges> = { set: {}, remove: [] };
  if (policy === "adopt") {
    state = drift.kind === "missing" ? "destroyed" : observedState(drift.observed ?? "absent");
    if (drift.kind === "missing") {
      remove = ["hostId"];
      items.push(...releaseItems(deps, claim));
      // The VM leaves its home host: resource plugins (addresses, quotas) give back with the claim.
      const contributions = await deps.plugins.release(deps, { vms: [vm] });
      extra = vmChanges(contributions, vm.id);
      for (const c of contributions) items.push(...c.items);
    }
  } else {
    state = "error";
  }
  items.unshift({
    // Only if nothing happened to the VM since we read it: no operation started, no other change.
    Update: updateOf(
      deps.db.table,
      keys.vm(vm.id),
      {
        set: { ...extra.set, state, updatedAt: now },
        inc: { version: 1 },
        remove: [...remove, ...extra.remove.filter((f) => !remove.includes(f))],
      },
      { expr: "#v = :v AND doneSeq = opSeq", names: { "#v": "version" }, values: { ":v": vm.version } },
    ),
  });
  items.push(
    eventItem(deps, {
      subjectPk: keys.vm(vm.id).pk,
      project: vm.project,
      type: `drift.${drift.kind}`,
      data: {
        ...drift,
        policy,
        inventoryAt: at,
        applied: { state, released: drift.kind === "missing" && policy === "adopt" },
        ...(drift.kind === "missing" && policy === "adopt" ? leftHomeData(vm) : {}),
        ...(state !== vm.state ? { state: { from: vm.state, to: state } } : {}),
      },
    }),
  );
  try {
    await transact(deps.db, items);
  } catch (err) {
    if (!failedConditions(err)?.length) throw err;
    deps.log.info("drift not applied: the VM changed meanwhile", { vmId: vm.id });
  }
}

async function recordOnly(deps: Deps, drift: Drift): Promise<void> {
  await transact(deps.db, [
    eventItem(deps, { subjectPk: keys.host(drift.hostId).pk, type: `drift.${drift.kind}`, data: drift }),
  ]);
}
