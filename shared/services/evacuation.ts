/**
 * The evacuation proper, once a host is confirmed fenced: each VM homed on it gives up its claim
 * there (with the resource plugins' release contributions, in the same transaction) and, if it was
 * meant to be running, gets a `start` operation in that same transaction, placed elsewhere by the
 * scheduler. Safe to run again and concurrently (the results consumer and the sweep both run it):
 * each VM's transaction is conditional on the VM as read and on the claim still existing, so every
 * claim is released exactly once and every VM restarted at most once.
 *
 * - VMs recorded running or paused are restarted; stopped, suspended (the saved memory was on the
 *   host) and error VMs lose their host and are left stopped (error stays error) for their owners.
 * - The operation under way on the fenced host (its turn) can never finish there: it fails with
 *   `host_fenced`. Whether the VM restarts then follows what that operation was for (a start, a
 *   reboot: yes; a shutdown, a destroy: no). Operations queued behind it run in turn afterwards.
 * - A VM migrating away from the fenced host may already be on the target: it is re-homed on the
 *   target (whose claim it holds) and, if meant to run, started there, where the driver finds the
 *   domain if it arrived: still one copy.
 * - A VM migrating onto the fenced host from a live one is left to its operation (the live source's
 *   agent reports where the domain is); a target claim left by a failed migration is released.
 */
import type { VmState } from "../contracts/common.ts";
import type { EvacuatedVm, HostEvacuation } from "../contracts/host.ts";
import { vmChanges } from "../plugins/contributions.ts";
import { putOf, type TxItem, transact, updateOf } from "../store/base.ts";
import { failedConditions } from "../store/errors.ts";
import type { ClaimItem, EvacuatedVmItem, HostItem, OpItem, VmItem } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import { getClaim, releaseItems } from "./capacity.ts";
import type { Deps } from "./context.ts";
import { eventItem, leftHomeData } from "./events.ts";
import { enqueueNext } from "./finish.ts";
import { hostClaims, hostItems, opAtSeq, transactOnHost } from "./host-records.ts";
import { getHostItem } from "./hosts.ts";
import { LIFECYCLE } from "./lifecycle.ts";
import { enqueueOps, getOpItem, newOp, putOpItem } from "./operations.ts";
import { getVmItem } from "./vms.ts";

export const HOST_FENCED = "host_fenced";
const RESTART_FROM: readonly VmState[] = ["running", "paused"];

type Outcome = "released" | "waiting";

/**
 * One pass over a fenced host being evacuated (state `fenced`, evacuation `evacuating`). Marks the
 * evacuation `done` when no claim is left on the host. Returns the claims still there.
 */
export async function continueEvacuation(deps: Deps, hostId: string): Promise<number> {
  const host = await getHostItem(deps, hostId);
  const ev = host?.evacuation;
  if (host?.state !== "fenced" || ev?.status !== "evacuating") return 0;
  let left = 0;
  for (const claim of await hostClaims(deps, hostId)) {
    try {
      if ((await evacuateClaim(deps, host, claim)) === "waiting") left++;
    } catch (err) {
      left++;
      deps.log.error("evacuation of a VM failed; the sweep tries again", { err, hostId, vmId: claim.vmId });
    }
  }
  if (left > 0 || (await hostClaims(deps, hostId)).length > 0) return Math.max(left, 1);
  const now = deps.now().toISOString();
  try {
    await transactOnHost(deps, [
      {
        // Once, for this evacuation.
        Update: updateOf(
          deps.db.table,
          keys.host(hostId),
          { set: { "evacuation.status": "done", "evacuation.finishedAt": now, updatedAt: now } },
          {
            expr: "#state = :fenced AND #ev.#st = :evacuating AND #ev.taskId = :task",
            names: { "#state": "state", "#ev": "evacuation", "#st": "status" },
            values: { ":fenced": "fenced", ":evacuating": "evacuating", ":task": ev.taskId },
          },
        ),
      },
      eventItem(deps, {
        subjectPk: keys.host(hostId).pk,
        type: "host.evacuated",
        requestId: ev.requestId,
        data: { taskId: ev.taskId },
      }),
    ]);
    deps.log.warn("host evacuated", { hostId, requestId: ev.requestId });
  } catch (err) {
    if (!failedConditions(err)?.length) throw err;
  }
  return 0;
}

/** Releases one claim on the fenced host, restarting its VM elsewhere when it was meant to run. */
async function evacuateClaim(deps: Deps, host: HostItem, listed: ClaimItem): Promise<Outcome> {
  // Read again: a concurrent pass may have released it since the listing.
  const claim = await getClaim(deps, host.id, listed.vmId);
  if (!claim) return "released";
  const vm = await getVmItem(deps, claim.vmId);
  if (!vm || (vm.hostId !== host.id && vm.migrationHostId !== host.id)) {
    // A claim no VM points at: nothing can run on it; give the capacity back.
    return commit(deps, host, claim, vm, { items: [], note: "a claim no VM pointed at was released" });
  }
  const cur = vm.opSeq > vm.doneSeq ? await opAtSeq(deps, vm.id, vm.doneSeq + 1) : undefined;
  if (vm.opSeq > vm.doneSeq && !cur) return "waiting"; // just submitted; the index will show it
  if (vm.hostId !== host.id) {
    // Only the target of a migration from a live host: that host's agent reports where the domain is.
    if (cur) return "waiting";
    return commit(deps, host, claim, vm, {
      items: [vmUpdate(deps, vm, { set: {}, remove: ["migrationHostId"] })],
      note: `a failed migration's claim on the fenced host was released; the VM stays on ${vm.hostId ?? "no host"}`,
    });
  }
  // Homed here. Where it may be now: on a migration's target (which it holds a claim on), else nowhere.
  const rehome = vm.migrationHostId && vm.migrationHostId !== host.id ? vm.migrationHostId : undefined;
  // Meant to be running: recorded so, or on its way there when the host was lost.
  const restart = RESTART_FROM.includes(cur ? LIFECYCLE[cur.action].after : vm.state);
  const contributions = await deps.plugins.release(deps, { op: cur, vms: [vm] });
  const extra = vmChanges(contributions, vm.id);
  const ev = host.evacuation!;
  const principal = {
    subject: ev.confirmedBy ?? ev.requestedBy,
    project: vm.project,
    roles: ["admin"] as const,
  };
  // The restart asks what the start that placed the VM here asked, as site policy recorded it then
  // (an address range open to the owner's role, a lease), but never that start's target host.
  const placing = restart ? await getOpItem(deps, claim.opId) : undefined;
  const { targetHostId: _, ...args } = placing?.action === "start" ? placing.args : {};
  const start = restart
    ? newOp(deps, { vm, action: "start", args, principal, requestId: ev.requestId, seq: vm.opSeq + 1 })
    : undefined;
  const now = deps.now().toISOString();
  const state: VmState = restart || vm.state !== "error" || cur ? "stopped" : "error";
  const set: Record<string, unknown> = {
    ...extra.set,
    state,
    ...(rehome ? { hostId: rehome } : {}),
    ...(cur ? { doneSeq: cur.seq } : {}),
    ...(start ? { opSeq: start.seq } : {}),
  };
  const remove = [...(rehome ? ["migrationHostId"] : ["hostId"]), ...extra.remove].filter((f) => !(f in set));
  const items: TxItem[] = [vmUpdate(deps, vm, { set, remove })];
  if (cur) items.push(...failOp(deps, cur, vm, host, state));
  if (start) items.push(putOpItem(deps, start));
  for (const c of contributions) items.push(...c.items);
  items.push(
    eventItem(deps, {
      subjectPk: keys.vm(vm.id).pk,
      project: vm.project,
      type: "vm.evacuated",
      requestId: ev.requestId,
      data: {
        hostId: host.id,
        restartOpId: start?.id ?? null,
        ...(rehome ? { rehomedTo: rehome } : leftHomeData(vm)),
        // The state change rides on the failed operation's event when there is one.
        ...(cur || state === vm.state ? {} : { state: { from: vm.state, to: state } }),
      },
    }),
  );
  const where = rehome ? `on ${rehome}, the target of its interrupted migration` : "elsewhere";
  const outcome = await commit(deps, host, claim, vm, {
    items,
    restartOpId: start?.id,
    failedOpId: cur?.id,
    note: start
      ? `restarted ${where}`
      : `left ${state}: it was not meant to be running (${cur?.action ?? vm.state})`,
    now,
  });
  if (outcome === "released") {
    // Its turn: the restart if nothing was queued behind the failed operation, else what was.
    if (start && (!cur || start.seq === cur.seq + 1)) await enqueueOps(deps, [start]);
    else if (cur) await enqueueNext(deps, cur);
  }
  return outcome;
}

/** The VM update, only if nothing happened to it since it was read (no new operation, no change). */
function vmUpdate(
  deps: Deps,
  vm: VmItem,
  changes: { set: Record<string, unknown>; remove: string[] },
): TxItem {
  return {
    Update: updateOf(
      deps.db.table,
      keys.vm(vm.id),
      {
        set: { ...changes.set, updatedAt: deps.now().toISOString() },
        remove: changes.remove,
        inc: { version: 1 },
      },
      {
        expr: "#v = :v AND opSeq = :os AND doneSeq = :ds",
        names: { "#v": "version" },
        values: { ":v": vm.version, ":os": vm.opSeq, ":ds": vm.doneSeq },
      },
    ),
  };
}

/** The operation under way on the fenced host fails, as finishOperation would record it. */
function failOp(deps: Deps, op: OpItem, vm: VmItem, host: HostItem, to: VmState): TxItem[] {
  const now = deps.now().toISOString();
  const error = {
    code: HOST_FENCED,
    message: `host ${host.id} was fenced (powered off) before the operation could finish there`,
  };
  return [
    {
      // Only an operation still open: one that finished meanwhile keeps its outcome (and we retry).
      Update: updateOf(
        deps.db.table,
        keys.op(op.id),
        { set: { status: "failed", error, finishedAt: now, updatedAt: now }, remove: ["gsi2pk", "gsi2sk"] },
        {
          expr: "#s IN (:q, :sc, :d, :r)",
          names: { "#s": "status" },
          values: { ":q": "queued", ":sc": "scheduling", ":d": "dispatched", ":r": "running" },
        },
      ),
    },
    eventItem(deps, {
      subjectPk: keys.vm(vm.id).pk,
      project: op.project,
      type: "op.failed",
      requestId: op.requestId,
      opId: op.id,
      data: {
        action: op.action,
        error,
        released: [host.id],
        ...(to !== vm.state ? { state: { from: vm.state, to } } : {}),
      },
    }),
  ];
}

/** The release of `claim`, the record of what was done, and the caller's items: all or none. */
async function commit(
  deps: Deps,
  host: HostItem,
  claim: ClaimItem,
  vm: VmItem | undefined,
  what: {
    items: TxItem[];
    note: string;
    restartOpId?: string | undefined;
    failedOpId?: string | undefined;
    now?: string;
  },
): Promise<Outcome> {
  const ev = host.evacuation!;
  const record: EvacuatedVmItem = {
    type: "evacuated_vm",
    hostId: host.id,
    taskId: ev.taskId,
    vmId: claim.vmId,
    ...(what.restartOpId ? { restartOpId: what.restartOpId } : {}),
    ...(what.failedOpId ? { failedOpId: what.failedOpId } : {}),
    note: what.note,
    at: what.now ?? deps.now().toISOString(),
  };
  try {
    await transact(deps.db, [
      ...what.items,
      ...releaseItems(deps, claim),
      { Put: putOf(deps.db.table, { ...record, ...keys.evacuatedVm(host.id, ev.taskId, claim.vmId) }) },
    ]);
  } catch (err) {
    const failed = failedConditions(err);
    if (!failed?.length) throw err;
    // The VM or its operation changed since we read them, or the claim went: look again next pass.
    deps.log.info("evacuation of a VM deferred: it changed meanwhile", { hostId: host.id, vmId: claim.vmId });
    return (await getClaim(deps, host.id, claim.vmId)) ? "waiting" : "released";
  }
  deps.log.warn("VM evacuated", {
    hostId: host.id,
    vmId: claim.vmId,
    project: vm?.project,
    restartOpId: what.restartOpId,
    failedOpId: what.failedOpId,
    requestId: ev.requestId,
  });
  return "released";
}

/** The evacuation's progress for the host view. */
export async function evacuationStatus(deps: Deps, host: HostItem): Promise<HostEvacuation | null> {
  const ev = host.evacuation;
  if (!ev) return null;
  const [claims, done] = await Promise.all([
    hostClaims(deps, host.id),
    hostItems<EvacuatedVmItem>(deps, host.id, `EVAC#${ev.taskId}#`),
  ]);
  const vms: EvacuatedVm[] = done.map((d) => ({
    vmId: d.vmId,
    restartOpId: d.restartOpId ?? null,
    failedOpId: d.failedOpId ?? null,
    note: d.note,
    at: d.at,
  }));
  return {
    status: ev.status,
    requestId: ev.requestId,
    requestedBy: ev.requestedBy,
    requestedAt: ev.requestedAt,
    taskId: ev.taskId,
    fencedAt: ev.fencedAt ?? null,
    confirmedBy: ev.confirmedBy ?? null,
    confirmedAt: ev.confirmedAt ?? null,
    finishedAt: ev.finishedAt ?? null,
    error: ev.error ?? null,
    remaining: claims.length,
    vms,
  };
}
