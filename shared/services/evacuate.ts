/**
 * Evacuating a failed host: its VMs restart elsewhere, and never while a copy may still run on it.
 * Nothing is restarted before the host is confirmed fenced (powered off out of band by the site's
 * agent, see bridge-agent/tasks/fence.ts), and a fence that fails, or is not reported by its
 * deadline, leaves every VM and claim as it was, with the error on the host.
 *
 *     down ─POST …/evacuate─▶ fencing ─agent reports fenced─▶ fenced ─▶ evacuating ─▶ done
 *                               │                      (agent+admin: awaiting_confirmation
 *                               │                       until POST …/evacuate/confirm)
 *                               └─ failure or no report by the deadline ─▶ down, fence_failed
 *
 * Confirmation (`USHER_EVACUATE_CONFIRM`): `agent` trusts the agent's report that the fence action
 * succeeded and was verified (a fence without a verify command still waits for an admin);
 * `agent+admin` (the default) always also waits for an admin who has checked the host is off.
 * The host stays `fenced`, out of placement, until an admin enables it again.
 *
 * A fenced host that later shows running guests did not stay fenced (fencedHostReported): before any
 * restart the evacuation fails (`fence_failed`, host `down`, nothing moved); once restarts began they
 * stop (`fence_breached`), and the copy of each VM already restarted elsewhere is purged from the
 * host by its agent, as Nova's compute service destroys evacuated instances when their host returns.
 */
import type { Principal } from "../auth/principal.ts";
import type { ErrorInfo } from "../contracts/common.ts";
import type { HostInventory, TaskResult } from "../contracts/messages.ts";
import { ConflictError, ErrorCode, NotFoundError } from "../errors.ts";
import { newId } from "../ids.ts";
import { updateOf } from "../store/base.ts";
import { failedConditions } from "../store/errors.ts";
import type { EvacuationRecord, HostItem } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";
import { continueEvacuation } from "./evacuation.ts";
import { eventItem } from "./events.ts";
import { transactOnHost } from "./host-records.ts";
import { getHostItem } from "./hosts.ts";
import { SNAPSHOT_MARGIN_MS } from "./reconcile.ts";
import { sendTask } from "./tasks.ts";
import { getVmItem } from "./vms.ts";

type Ctx = { principal: Principal; requestId: string };

/** `POST /v1/hosts/{id}/evacuate`: a `down` host is fenced first; see the module comment. */
export async function evacuateHost(deps: Deps, ctx: Ctx, hostId: string): Promise<void> {
  const host = await getHostItem(deps, hostId);
  if (!host) throw new NotFoundError("host", hostId);
  if (host.state !== "down") {
    throw new ConflictError(
      ErrorCode.invalidState,
      `only a down host can be evacuated; host ${hostId} is ${host.state}`,
      { details: { state: host.state, evacuation: host.evacuation?.status ?? null } },
    );
  }
  const now = deps.now();
  const evacuation: EvacuationRecord = {
    status: "fencing",
    requestId: ctx.requestId,
    requestedBy: ctx.principal.subject,
    requestedAt: now.toISOString(),
    taskId: newId("task"),
    fenceDeadline: new Date(now.getTime() + deps.config.fenceTimeoutSeconds * 1000).toISOString(),
  };
  try {
    await transactOnHost(deps, [
      {
        // Only a host still down: one whose agent reported it again meanwhile is not fenced.
        Update: updateOf(
          deps.db.table,
          keys.host(hostId),
          { set: { state: "fencing", evacuation, updatedAt: now.toISOString() }, remove: ["drain"] },
          { expr: "#state = :down", names: { "#state": "state" }, values: { ":down": "down" } },
        ),
      },
      eventItem(deps, {
        subjectPk: keys.host(hostId).pk,
        type: "host.fencing",
        requestId: ctx.requestId,
        actor: ctx.principal.subject,
        data: { taskId: evacuation.taskId, fenceDeadline: evacuation.fenceDeadline },
      }),
    ]);
  } catch (err) {
    if (failedConditions(err)?.includes(0))
      throw new ConflictError(ErrorCode.conflict, `host ${hostId} changed state meanwhile; try again`);
    throw err;
  }
  // Recorded first, then sent: a task out without its record could fence a host nobody tracks.
  try {
    await sendTask(deps, {
      taskId: evacuation.taskId,
      requestId: ctx.requestId,
      site: host.site,
      kind: "fence",
      hostId,
      deadline: evacuation.fenceDeadline,
      payload: { address: host.address },
    });
  } catch (err) {
    deps.log.error("fence task not sent", { err, hostId, requestId: ctx.requestId });
    await fenceFailed(deps, host, evacuation.taskId, {
      code: ErrorCode.queueSendFailed,
      message: "the fence task could not be sent to the site's agent; nothing was changed",
    });
  }
}

/** The agent's report on a fence task (routed here by kind from the results queue). */
export async function recordFenceResult(deps: Deps, site: string, r: TaskResult): Promise<void> {
  const log = deps.log.child({ taskId: r.taskId, requestId: r.requestId, hostId: r.hostId, site });
  const host = r.hostId ? await getHostItem(deps, r.hostId) : undefined;
  // An agent speaks only for its own site's hosts.
  if (!host || host.site !== site) return log.error("fence report refused: not a host of this site");
  if (host.state !== "fencing" || host.evacuation?.taskId !== r.taskId) {
    return log.warn("fence report for no fence in progress ignored", { state: host.state, ok: r.ok });
  }
  if (!(r.ok && r.data?.fenced === true)) {
    log.error("fence failed: nothing is restarted", { error: r.error });
    await fenceFailed(
      deps,
      host,
      r.taskId,
      r.error ?? { code: "fence_not_confirmed", message: "the agent did not report the host fenced" },
    );
    return;
  }
  // A fence whose power-off the agent could not verify (no verify command) waits for an admin even
  // in `agent` mode: trusting an unchecked power-off is how two copies of a VM end up running.
  const verified = r.data?.verified === true;
  const next = deps.config.evacuateConfirm === "agent" && verified ? "evacuating" : "awaiting_confirmation";
  const now = deps.now().toISOString();
  try {
    await transactOnHost(deps, [
      {
        // This fence, once: a duplicate or stale report (an earlier attempt's) changes nothing.
        Update: updateOf(
          deps.db.table,
          keys.host(host.id),
          {
            set: {
              state: "fenced",
              "evacuation.status": next,
              "evacuation.fencedAt": now,
              "evacuation.fence": r.data ?? {},
              updatedAt: now,
            },
          },
          fencing(r.taskId),
        ),
      },
      eventItem(deps, {
        subjectPk: keys.host(host.id).pk,
        type: "host.fenced",
        requestId: r.requestId,
        data: { taskId: r.taskId, confirm: deps.config.evacuateConfirm, report: r.data ?? {} },
      }),
    ]);
  } catch (err) {
    if (failedConditions(err)?.length) return log.info("fence report already recorded");
    throw err;
  }
  log.warn("host fenced", { next });
  if (next === "evacuating") await evacuateNow(deps, host.id);
}

/** `POST /v1/hosts/{id}/evacuate/confirm` (mode `agent+admin`): the fence reported, an admin agrees. */
export async function confirmEvacuation(deps: Deps, ctx: Ctx, hostId: string): Promise<void> {
  const host = await getHostItem(deps, hostId);
  if (!host) throw new NotFoundError("host", hostId);
  const ev = host.evacuation;
  if (host.state !== "fenced" || ev?.status !== "awaiting_confirmation") {
    throw new ConflictError(
      ErrorCode.invalidState,
      `host ${hostId} has no fenced evacuation awaiting confirmation (state ${host.state}, evacuation ${ev?.status ?? "none"})`,
      { details: { state: host.state, evacuation: ev?.status ?? null } },
    );
  }
  const now = deps.now().toISOString();
  try {
    await transactOnHost(deps, [
      {
        // Once, and only after the agent's fence report (status awaiting_confirmation).
        Update: updateOf(
          deps.db.table,
          keys.host(hostId),
          {
            set: {
              "evacuation.status": "evacuating",
              "evacuation.confirmedBy": ctx.principal.subject,
              "evacuation.confirmedAt": now,
              updatedAt: now,
            },
          },
          {
            expr: "#state = :fenced AND #ev.#st = :awaiting AND #ev.taskId = :task",
            names: { "#state": "state", "#ev": "evacuation", "#st": "status" },
            values: { ":fenced": "fenced", ":awaiting": "awaiting_confirmation", ":task": ev.taskId },
          },
        ),
      },
      eventItem(deps, {
        subjectPk: keys.host(hostId).pk,
        type: "host.evacuation_confirmed",
        requestId: ctx.requestId,
        actor: ctx.principal.subject,
        data: { taskId: ev.taskId },
      }),
    ]);
  } catch (err) {
    if (failedConditions(err)?.includes(0))
      throw new ConflictError(ErrorCode.conflict, `host ${hostId} changed meanwhile; try again`);
    throw err;
  }
  await evacuateNow(deps, hostId);
}

/** Sweep: a fence not reported by its deadline (plus the grace) has failed. Returns whether it had. */
export async function expireFence(deps: Deps, host: HostItem): Promise<boolean> {
  const ev = host.evacuation;
  if (host.state !== "fencing" || !ev) return false;
  const until = Date.parse(ev.fenceDeadline) + deps.config.deadlineGraceSeconds * 1000;
  if (deps.now().getTime() <= until) return false;
  return fenceFailed(deps, host, ev.taskId, {
    code: "fence_timeout",
    message: `the agent did not report the fence by ${ev.fenceDeadline}; nothing was changed`,
  });
}

/** fencing → down, with the error on the evacuation; every VM and claim stays as it was. */
async function fenceFailed(deps: Deps, host: HostItem, taskId: string, error: ErrorInfo): Promise<boolean> {
  const now = deps.now().toISOString();
  try {
    await transactOnHost(deps, [
      {
        Update: updateOf(
          deps.db.table,
          keys.host(host.id),
          {
            set: {
              state: "down",
              "evacuation.status": "fence_failed",
              "evacuation.error": error,
              "evacuation.finishedAt": now,
              updatedAt: now,
            },
          },
          fencing(taskId),
        ),
      },
      eventItem(deps, {
        subjectPk: keys.host(host.id).pk,
        type: "host.fence_failed",
        requestId: host.evacuation?.requestId,
        data: { taskId, error },
      }),
    ]);
    return true;
  } catch (err) {
    if (failedConditions(err)?.length) return false;
    throw err;
  }
}

/**
 * An inventory from a fenced host that its agent could reach. Guests of Usher's running on it, seen
 * after the fence was recorded (with the drift margin for clock skew), mean the fence did not hold;
 * see the module comment. Guests shut off (a fenced host powered on again) are what a fence leaves.
 */
export async function fencedHostReported(
  deps: Deps,
  host: HostItem,
  inv: HostInventory,
  at: string,
): Promise<void> {
  const ev = host.evacuation;
  // While fencing, the fence's own report decides; an inventory read before the fence says nothing.
  if (!inv.reachable || host.state !== "fenced" || !ev?.fencedAt) return;
  if (Date.parse(at) <= Date.parse(ev.fencedAt) + SNAPSHOT_MARGIN_MS) return;
  const live = inv.domains.filter(
    (d): d is typeof d & { vmId: string } =>
      d.vmId !== undefined && (d.powerState === "running" || d.powerState === "paused"),
  );
  if (live.length === 0) return;
  const log = deps.log.child({ hostId: host.id, taskId: ev.taskId, requestId: ev.requestId });
  const seen = live.map((d) => ({ vmId: d.vmId, powerState: d.powerState }));
  if (ev.status === "awaiting_confirmation") {
    log.error("fenced host shows running guests before any restart: the fence failed", { seen });
    await fenceBroken(deps, host, "awaiting_confirmation", {
      set: {
        state: "down",
        "evacuation.status": "fence_failed",
        "evacuation.error": contradicted(host, seen),
      },
      event: "host.fence_failed",
      data: { error: contradicted(host, seen) },
    });
    return;
  }
  if (ev.status === "evacuating" || ev.status === "done") {
    log.error("fenced host shows running guests after restarts began: restarts stop, strays purged", {
      seen,
    });
    await fenceBroken(deps, host, ev.status, {
      set: { "evacuation.status": "fence_breached", "evacuation.error": contradicted(host, seen) },
      event: "host.fence_breached",
      data: { seen },
    });
  }
  if (ev.status === "fence_failed") return;
  // Each running copy of a VM now homed elsewhere is the stray one. Sent again on every such report
  // until it is gone (destroy is idempotent); a VM still homed here runs here and is left alone.
  for (const d of live) {
    const vm = await getVmItem(deps, d.vmId);
    if (!vm || vm.hostId === host.id || vm.migrationHostId === host.id) continue;
    try {
      await sendTask(deps, {
        requestId: ev.requestId,
        site: host.site,
        kind: "purge",
        hostId: host.id,
        payload: { vmId: d.vmId },
      });
    } catch (err) {
      log.error("purge task not sent; the next report tries again", { err, vmId: d.vmId });
    }
  }
}

const contradicted = (host: HostItem, seen: { vmId: string }[]): ErrorInfo => ({
  code: "fence_contradicted",
  message: `host ${host.id} reported ${seen.length} running guest(s) after its fence was reported`,
  details: { vmIds: seen.map((s) => s.vmId) },
});

/** Moves a fenced host's evacuation on from `from` (once: a repeat report finds it moved). */
async function fenceBroken(
  deps: Deps,
  host: HostItem,
  from: string,
  what: { set: Record<string, unknown>; event: string; data: Record<string, unknown> },
): Promise<void> {
  const ev = host.evacuation!;
  const now = deps.now().toISOString();
  try {
    await transactOnHost(deps, [
      {
        Update: updateOf(
          deps.db.table,
          keys.host(host.id),
          { set: { ...what.set, "evacuation.finishedAt": now, updatedAt: now } },
          {
            expr: "#state = :fenced AND #ev.#st = :from AND #ev.taskId = :task",
            names: { "#state": "state", "#ev": "evacuation", "#st": "status" },
            values: { ":fenced": "fenced", ":from": from, ":task": ev.taskId },
          },
        ),
      },
      eventItem(deps, {
        subjectPk: keys.host(host.id).pk,
        type: what.event,
        requestId: ev.requestId,
        data: { taskId: ev.taskId, ...what.data },
      }),
    ]);
  } catch (err) {
    if (!failedConditions(err)?.length) throw err;
  }
}

/** Condition: the host is being fenced by this task. */
const fencing = (taskId: string) => ({
  expr: "#state = :fencing AND #ev.taskId = :task",
  names: { "#state": "state", "#ev": "evacuation" },
  values: { ":fencing": "fencing", ":task": taskId },
});

/** Runs the evacuation now; if it fails here the sweep carries it on. */
async function evacuateNow(deps: Deps, hostId: string): Promise<void> {
  try {
    await continueEvacuation(deps, hostId);
  } catch (err) {
    deps.log.error("evacuation interrupted; the sweep carries it on", { err, hostId });
  }
}
