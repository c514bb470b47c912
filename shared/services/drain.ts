/**
 * Draining a host for maintenance. The host leaves `enabled`, so nothing new is placed on it (a
 * claim's condition requires `state = enabled`); every VM it holds is live-migrated away by an
 * ordinary `migrate` operation submitted through requestAction, so each VM's operations keep their
 * order; once no capacity claim is left on it the host is `drained`.
 *
 * `drained` is decided by the sweep (progressDrain), which reads the host's claims afresh on every
 * run, rather than where claims are released: a crash between a release and a follow-up write can
 * then never leave a host draining forever. The price is up to one sweep interval of delay. The
 * sweep also submits migrations the request did not (it crashed midway, or a VM arrived afterwards
 * from a migration already under way); an Idempotency-Key per VM and attempt keeps that to one.
 *
 * A failed migration is not retried by itself: the host stays draining with the failure visible
 * until an admin drains it again. Stopped and suspended VMs are not moved (Usher migrates running or
 * paused VMs; a stopped one's disk stays with its definition): they are reported `blocked` and keep
 * the host draining until they are started (and drained again), destroyed or deleted.
 */
import type { Principal } from "../auth/principal.ts";
import type { ErrorInfo, VmState } from "../contracts/common.ts";
import type { DrainVm, HostDrain } from "../contracts/host.ts";
import { ConflictError, ErrorCode, NotFoundError, UsherError } from "../errors.ts";
import { newId } from "../ids.ts";
import { putOf, updateOf } from "../store/base.ts";
import { failedConditions } from "../store/errors.ts";
import type { DrainRecord, DrainVmItem, HostItem, OpItem } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";
import { eventItem } from "./events.ts";
import { hostClaims, hostItems, transactOnHost } from "./host-records.ts";
import { getHostItem } from "./hosts.ts";
import { requestHash } from "./idempotency.ts";
import { getOpItem, isTerminal } from "./operations.ts";
import { getVmItem, requestAction } from "./vms.ts";

/** States a VM can be live-migrated from. */
const MOVABLE: readonly VmState[] = ["running", "paused"];
const MIGRATE = { action: "migrate", live: true } as const;
/** States a drain may start from. */
const DRAINABLE = ["enabled", "disabled", "draining"];

const notRunning = (state: VmState): ErrorInfo => ({
  code: "not_running",
  message: `the VM is ${state}: only running or paused VMs are migrated; start it (then drain again), or destroy or delete it`,
});

/**
 * `POST /v1/hosts/{id}/drain`: the host stops taking placements and its VMs are migrated away.
 * Draining a draining host submits again the migrations that failed or were refused.
 */
export async function drainHost(
  deps: Deps,
  ctx: { principal: Principal; requestId: string },
  hostId: string,
): Promise<void> {
  const host = await getHostItem(deps, hostId);
  if (!host) throw new NotFoundError("host", hostId);
  if (host.state === "drained") return;
  if (host.state === "draining" && host.drain) {
    await progressDrain(deps, host, { retryFailed: true });
    return;
  }
  if (!DRAINABLE.includes(host.state)) {
    const hint = host.state === "down" ? "; evacuate it instead" : "";
    throw new ConflictError(ErrorCode.invalidState, `a ${host.state} host cannot be drained${hint}`, {
      details: { state: host.state },
    });
  }
  const now = deps.now().toISOString();
  const drain: DrainRecord = {
    id: newId("drain"),
    requestId: ctx.requestId,
    requestedBy: ctx.principal.subject,
    requestedAt: now,
  };
  try {
    await transactOnHost(deps, [
      {
        // From the state we read only: a host that went down or changed meanwhile is not drained blind.
        Update: updateOf(
          deps.db.table,
          keys.host(hostId),
          { set: { state: "draining", drain, updatedAt: now } },
          { expr: "#state = :from", names: { "#state": "state" }, values: { ":from": host.state } },
        ),
      },
      eventItem(deps, {
        subjectPk: keys.host(hostId).pk,
        type: "host.draining",
        requestId: ctx.requestId,
        actor: ctx.principal.subject,
        data: { from: host.state, drainId: drain.id },
      }),
    ]);
  } catch (err) {
    if (failedConditions(err)?.includes(0))
      throw new ConflictError(ErrorCode.conflict, `host ${hostId} changed state meanwhile; try again`);
    throw err;
  }
  await progressDrain(deps, { ...host, state: "draining", drain }, { retryFailed: false });
}

/**
 * One step of a drain (the request, then every sweep): marks the host `drained` when no claim is
 * left on it, otherwise submits the migrations still missing. Returns true when it became drained.
 */
export async function progressDrain(
  deps: Deps,
  host: HostItem,
  opts: { retryFailed: boolean },
): Promise<boolean> {
  const drain = host.drain;
  if (host.state !== "draining" || !drain) return false;
  const claims = await hostClaims(deps, host.id);
  if (claims.length === 0) return markDrained(deps, host, drain);
  const entries = await drainEntries(deps, host.id, drain.id);
  for (const claim of claims) {
    try {
      await submit(deps, host, drain, claim.vmId, entries.get(claim.vmId), opts.retryFailed);
    } catch (err) {
      deps.log.error("drain could not submit a migration", { err, hostId: host.id, vmId: claim.vmId });
    }
  }
  return false;
}

async function drainEntries(deps: Deps, hostId: string, drainId: string) {
  const items = await hostItems<DrainVmItem>(deps, hostId, `DRAIN#${drainId}#`);
  return new Map(items.map((i) => [i.vmId, i]));
}

async function submit(
  deps: Deps,
  host: HostItem,
  drain: DrainRecord,
  vmId: string,
  entry: DrainVmItem | undefined,
  retryFailed: boolean,
): Promise<void> {
  const vm = await getVmItem(deps, vmId);
  // Gone, or only a migration's target here (it is homed here once that finishes, then moved on).
  if (!vm || vm.hostId !== host.id) return;
  // Already leaving by a migration of someone else's: its outcome decides (moved, or drained next pass).
  if (vm.migrationHostId && !entry?.opId) return;
  const prev = entry?.opId ? await getOpItem(deps, entry.opId) : undefined;
  if (prev && !isTerminal(prev)) return; // under way
  const failed = (prev && prev.status !== "succeeded") || (!prev && entry?.refused);
  if (failed && !retryFailed) return; // visible in the drain's status until an admin drains again
  const idle = vm.opSeq === vm.doneSeq;
  if (idle && !MOVABLE.includes(vm.state)) return; // blocked: reported by drainStatus
  const principal: Principal = { subject: drain.requestedBy, project: vm.project, roles: ["admin"] };
  // One key per VM and attempt: a sweep racing the request, or re-running after a crash between the
  // submission and its record, gets the same operation back instead of a second migration.
  const idempotency = {
    scope: JSON.stringify(["usher:drain", host.id]),
    key: `${drain.id}:${vm.id}:${prev?.id ?? entry?.refused?.code ?? "first"}`,
    hash: await requestHash("POST", `/v1/vms/${vm.id}/actions`, MIGRATE),
  };
  let opId: string | undefined;
  let refused: ErrorInfo | undefined;
  try {
    const res = await requestAction(
      deps,
      { principal, requestId: drain.requestId, idempotency },
      vm.id,
      MIGRATE,
      // A VM with work queued takes the migration after it; its turn decides whether it can move, and
      // a VM that has left the host by then (a queued migration of its own) is not moved again.
      { deferStateCheck: !idle, fromHostId: host.id },
    );
    opId = (res.body as { operation: { id: string } }).operation.id;
  } catch (err) {
    if (!(err instanceof UsherError)) throw err;
    refused = err.toInfo();
  }
  const item: DrainVmItem = {
    type: "drain_vm",
    hostId: host.id,
    drainId: drain.id,
    vmId: vm.id,
    ...(opId ? { opId } : {}),
    ...(refused ? { refused } : {}),
    updatedAt: deps.now().toISOString(),
  };
  // The latest attempt replaces the record of the one before (no condition: last writer wins).
  await transactOnHost(deps, [
    { Put: putOf(deps.db.table, { ...item, ...keys.drainVm(host.id, drain.id, vm.id) }) },
  ]);
  deps.log.info(opId ? "drain: migration submitted" : "drain: migration refused", {
    hostId: host.id,
    vmId: vm.id,
    opId,
    requestId: drain.requestId,
    error: refused,
  });
}

async function markDrained(deps: Deps, host: HostItem, drain: DrainRecord): Promise<boolean> {
  const now = deps.now().toISOString();
  try {
    await transactOnHost(deps, [
      {
        // Still this drain: a host re-enabled, gone down or drained anew meanwhile is left as it is.
        // No claim can appear once draining (claims need `enabled`), so none was missed.
        Update: updateOf(
          deps.db.table,
          keys.host(host.id),
          { set: { state: "drained", "drain.finishedAt": now, updatedAt: now } },
          {
            expr: "#state = :draining AND #drain.#id = :id",
            names: { "#state": "state", "#drain": "drain", "#id": "id" },
            values: { ":draining": "draining", ":id": drain.id },
          },
        ),
      },
      eventItem(deps, {
        subjectPk: keys.host(host.id).pk,
        type: "host.drained",
        requestId: drain.requestId,
        data: { drainId: drain.id, requestedAt: drain.requestedAt },
      }),
    ]);
  } catch (err) {
    if (failedConditions(err)?.length) return false;
    throw err;
  }
  deps.log.info("host drained", { hostId: host.id, requestId: drain.requestId });
  return true;
}

/** The drain's progress for the host view: every VM still holding capacity on the host, and why. */
export async function drainStatus(deps: Deps, host: HostItem): Promise<HostDrain | null> {
  const drain = host.drain;
  if (!drain) return null;
  const claims = await hostClaims(deps, host.id);
  const entries = await drainEntries(deps, host.id, drain.id);
  const vms: DrainVm[] = [];
  for (const claim of claims) {
    const vm = await getVmItem(deps, claim.vmId);
    const entry = entries.get(claim.vmId);
    const op = entry?.opId ? await getOpItem(deps, entry.opId) : undefined;
    vms.push({ vmId: claim.vmId, opId: op?.id ?? null, ...vmStatus(vm, host, op, entry) });
  }
  return {
    requestId: drain.requestId,
    requestedBy: drain.requestedBy,
    requestedAt: drain.requestedAt,
    finishedAt: drain.finishedAt ?? null,
    remaining: claims.length,
    failures: vms.filter((v) => v.status === "failed" || v.status === "blocked").length,
    vms,
  };
}

function vmStatus(
  vm: Awaited<ReturnType<typeof getVmItem>>,
  host: HostItem,
  op: OpItem | undefined,
  entry: DrainVmItem | undefined,
): Pick<DrainVm, "status" | "error"> {
  if (vm && vm.hostId !== host.id) return { status: "arriving", error: null };
  if (op && !isTerminal(op)) return { status: "migrating", error: null };
  // Leaving by a migration the drain did not submit.
  if (vm?.migrationHostId && !op) return { status: "migrating", error: null };
  if (op && op.status !== "succeeded") {
    return {
      status: "failed",
      error: op.error ?? { code: "migration_failed", message: `the migration ${op.status}` },
    };
  }
  if (!op && entry?.refused) return { status: "blocked", error: entry.refused };
  if (vm && vm.opSeq === vm.doneSeq && !MOVABLE.includes(vm.state))
    return { status: "blocked", error: notRunning(vm.state) };
  return { status: "pending", error: null };
}
