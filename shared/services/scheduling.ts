/**
 * The scheduling consumer's service: takes an operation whose turn it is, places it when it needs a
 * host (claiming capacity atomically), and sends the signed command to the agent of the host's site.
 * Safe to run for the same operation more than once, concurrently or after a crash.
 */
import type { AgentCommand, OpsMessage } from "../contracts/messages.ts";
import { ErrorCode, UsherError } from "../errors.ts";
import { signCommand } from "../signing/envelopes.ts";
import { type TxItem, transact, updateOf } from "../store/base.ts";
import { failedConditions } from "../store/errors.ts";
import type { ClusterItem, HostItem, OpItem, VmItem } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";
import { eventItem } from "./events.ts";
import { finishOperation } from "./finish.ts";
import { getClusterItem, isGangStart, placeGangMember } from "./gang.ts";
import { getHostItem } from "./hosts.ts";
import { canStart, LIFECYCLE } from "./lifecycle.ts";
import { getOpItem, isTerminal } from "./operations.ts";
import { place } from "./place.ts";
import { getVmItem } from "./vms.ts";

/** How long an operation that lost to contention waits before it is scheduled again. */
const CONTENDED_RETRY_SECONDS = 1;

const fail = (code: string, message: string, details?: Record<string, unknown>) =>
  ({ ok: false, error: { code, message, ...(details ? { details } : {}) } }) as const;

/** Handles one `ops` message. Throws only on failures worth a redelivery (DynamoDB, SQS). */
export async function scheduleOperation(deps: Deps, msg: OpsMessage): Promise<void> {
  const log = deps.log.child({ opId: msg.opId, requestId: msg.requestId });
  // Both at once when the message names the VM (an operation never changes VM).
  const [op, read] = await Promise.all([
    getOpItem(deps, msg.opId),
    msg.vmId ? getVmItem(deps, msg.vmId) : undefined,
  ]);
  if (!op) return log.warn("operation not found; message dropped");
  if (isTerminal(op) || op.status === "dispatched" || op.status === "running") return;
  const vm = msg.vmId === op.vmId ? read : await getVmItem(deps, op.vmId);
  if (!vm) {
    await finishOperation(
      deps,
      op,
      undefined,
      fail(ErrorCode.notFound, "the VM was deleted before this operation ran"),
      { dispatched: false },
    );
    return;
  }
  if (op.seq > vm.doneSeq + 1)
    return log.debug("waiting for the VM's earlier operations", { seq: op.seq, doneSeq: vm.doneSeq });
  if (op.seq <= vm.doneSeq)
    return log.error("operation is behind its VM's turn; left for the sweep", {
      seq: op.seq,
      doneSeq: vm.doneSeq,
    });
  if (Date.parse(op.deadline) <= deps.now().getTime()) {
    await finishOperation(
      deps,
      op,
      vm,
      fail(ErrorCode.deadlineExceeded, "the operation's deadline passed before it could run"),
      { dispatched: false },
    );
    return;
  }
  // No write to take it: the dispatch's transaction is conditional on the operation being still
  // queued, so of handlers racing on one operation only one dispatches; each try counts an attempt.
  const taken: OpItem = { ...op, attempts: op.attempts + 1 };
  try {
    await route(deps, taken, vm);
  } catch (err) {
    if (
      err instanceof UsherError &&
      (err.code === ErrorCode.noCapacity ||
        err.code === ErrorCode.invalidState ||
        err.code === ErrorCode.hostUnavailable ||
        err.code === ErrorCode.quotaExceeded ||
        err.code === ErrorCode.vetoed ||
        err.code === ErrorCode.pluginFailed)
    ) {
      await finishOperation(
        deps,
        taken,
        await getVmItem(deps, vm.id),
        { ok: false, error: err.toInfo() },
        { dispatched: false },
      );
      return;
    }
    if (err instanceof UsherError && err.code === ErrorCode.conflict) {
      // Contention, not failure: try again in a moment from a fresh message, rather than wait out
      // this one's visibility timeout. A send that fails throws, and this message comes back instead.
      log.info("contended; the operation is tried again shortly", { error: err.message });
      await deps.queues.sendOps(
        [{ opId: op.id, requestId: op.requestId, vmId: op.vmId }],
        CONTENDED_RETRY_SECONDS,
      );
      return;
    }
    throw err;
  }
}

async function route(deps: Deps, op: OpItem, vm: VmItem): Promise<void> {
  if (!canStart(op.action, vm.state)) {
    throw new UsherError(ErrorCode.invalidState, `cannot ${op.action} a VM that is ${vm.state}`, {
      details: { state: vm.state },
    });
  }
  const only = typeof op.args.targetHostId === "string" ? op.args.targetHostId : undefined;
  if (op.action === "start") {
    if (vm.hostId) return dispatch(deps, op, vm, required(await getHostItem(deps, vm.hostId), vm.hostId));
    const cluster = vm.clusterId ? await getClusterItem(deps, vm.clusterId) : undefined;
    if (isGangStart(cluster, vm, op)) {
      // A cluster's members are placed together, all or none, by whichever of their starts comes first.
      const placed = await placeGangMember(deps, cluster, vm, op);
      return dispatch(deps, op, placed.vm, placed.host);
    }
    return placeAndDispatch(deps, op, vm, { only, cluster });
  }
  if (!vm.hostId) {
    if (op.action === "destroy" || op.action === "delete") {
      // Nothing was ever placed: there is nothing to tell a host.
      await finishOperation(deps, op, vm, { ok: true }, { dispatched: false });
      return;
    }
    throw new UsherError(ErrorCode.invalidState, `cannot ${op.action} a VM that has no host`);
  }
  if (op.action === "migrate" && typeof op.args.fromHostId === "string" && op.args.fromHostId !== vm.hostId) {
    // A drain's migration of a VM that has left the draining host since (another migration won).
    throw new UsherError(
      ErrorCode.invalidState,
      `the VM left host ${op.args.fromHostId} before this migration's turn: nothing to move`,
      { details: { fromHostId: op.args.fromHostId, hostId: vm.hostId } },
    );
  }
  const source = required(await getHostItem(deps, vm.hostId), vm.hostId);
  if (op.action === "migrate") {
    const target = vm.migrationHostId
      ? required(await getHostItem(deps, vm.migrationHostId), vm.migrationHostId)
      : (await place(deps, vm, op, { field: "migrationHostId", only, exclude: vm.hostId, kind: source.kind }))
          .host;
    return dispatch(deps, op, vm, source, target);
  }
  return dispatch(deps, op, vm, source);
}

function required(host: HostItem | undefined, id: string | undefined): HostItem {
  if (!host) throw new UsherError(ErrorCode.hostUnavailable, `host ${id ?? "(none)"} is not registered`);
  return host;
}

/** The command for `op` on `host` (and a migration's `target`), as the agent receives it. */
function commandFor(op: OpItem, vm: VmItem, host: HostItem, target?: HostItem): AgentCommand {
  return {
    opId: op.id,
    requestId: op.requestId,
    action: op.action,
    site: host.site,
    hostId: host.id,
    vmId: vm.id,
    vmName: vm.name,
    spec: vm.spec,
    ...(vm.network ? { network: vm.network } : {}),
    ...(target
      ? {
          target: { hostId: target.id, address: target.address, kind: target.kind },
          live: op.args.live !== false,
        }
      : {}),
    deadline: op.deadline,
    attempt: op.attempts,
  };
}

/** Refuses a command to a host being fenced or fenced (see dispatch). */
function checkTakesCommands(hosts: HostItem[]): void {
  for (const h of hosts) {
    if (h.state === "fencing" || h.state === "fenced") {
      throw new UsherError(ErrorCode.hostUnavailable, `host ${h.id} is ${h.state}: it takes no commands`, {
        details: { hostId: h.id, state: h.state },
      });
    }
  }
}

/** The operation's record of its dispatch: status, host and attempt, from the statuses given. */
function dispatchedOp(deps: Deps, op: OpItem, host: HostItem, from: OpItem["status"][], now: string): TxItem {
  const values = Object.fromEntries(from.map((s, i) => [`:s${i}`, s]));
  return {
    // From the statuses we expect only: a concurrent handler's dispatch (or an end) wins.
    Update: updateOf(
      deps.db.table,
      keys.op(op.id),
      { set: { status: "dispatched", hostId: host.id, attempts: op.attempts, updatedAt: now } },
      { expr: `#s IN (${Object.keys(values).join(", ")})`, names: { "#s": "status" }, values },
    ),
  };
}

function dispatchedEvent(
  deps: Deps,
  op: OpItem,
  vm: VmItem,
  host: HostItem,
  target: HostItem | undefined,
  state: { from: string; to: string } | undefined,
): TxItem {
  return eventItem(deps, {
    subjectPk: keys.vm(vm.id).pk,
    project: vm.project,
    type: "op.dispatched",
    requestId: op.requestId,
    opId: op.id,
    data: {
      hostId: host.id,
      action: op.action,
      ...(target ? { targetHostId: target.id } : {}),
      ...(state ? { state } : {}),
    },
  });
}

/** Sends a recorded command; a send that fails is left to the sweep's re-dispatch. */
async function send(deps: Deps, op: OpItem, vm: VmItem, host: HostItem, jws: string): Promise<void> {
  // Recorded first, then sent: a send that fails (or a crash here) leaves a dispatched operation the
  // agent never acknowledges, which the sweep re-sends; so no command is ever out unrecorded.
  try {
    await deps.queues.sendCommand(host.site, jws);
  } catch (err) {
    deps.log.warn("command send failed; the sweep will re-send it", {
      err,
      opId: op.id,
      requestId: op.requestId,
    });
    return;
  }
  deps.log.info("operation dispatched", {
    opId: op.id,
    requestId: op.requestId,
    vmId: vm.id,
    hostId: host.id,
    action: op.action,
    site: host.site,
  });
}

/**
 * A start that needs a host: the placement's claim and the dispatch in one transaction (the claim,
 * the VM's host, address and `starting` state, the operation dispatched, its event), then the
 * command. Half the writes of a claim followed by a dispatch, and never a claimed VM left undispatched.
 */
async function placeAndDispatch(
  deps: Deps,
  op: OpItem,
  vm: VmItem,
  opts: { only: string | undefined; cluster: ClusterItem | undefined },
): Promise<void> {
  const during = LIFECYCLE[op.action].during;
  let jws: string | undefined;
  const placed = await place(deps, vm, op, {
    field: "hostId",
    only: opts.only,
    cluster: opts.cluster,
    dispatch: {
      vmSet: during ? { state: during } : {},
      async items(host, placedVm) {
        const now = deps.now().toISOString();
        jws = await signCommand(commandFor(op, placedVm, host), deps.signer);
        const state = during && during !== vm.state ? { from: vm.state, to: during } : undefined;
        return [
          dispatchedOp(deps, op, host, ["queued", "scheduling"], now),
          dispatchedEvent(deps, op, vm, host, undefined, state),
        ];
      },
    },
  });
  if (placed.movedOn) return;
  // Placed by a concurrent handler of this same operation meanwhile: dispatch as any placed VM.
  if (!placed.dispatched || jws === undefined) return dispatch(deps, op, placed.vm, placed.host);
  await send(deps, op, placed.vm, placed.host, jws);
}

/**
 * Marks the operation dispatched (and the VM in its transitional state), then signs and sends the
 * command. A re-dispatch by the sweep goes through here too, for an operation already dispatched.
 */
export async function dispatch(
  deps: Deps,
  op: OpItem,
  vm: VmItem,
  host: HostItem,
  target?: HostItem,
): Promise<void> {
  // A host being fenced, or fenced, runs nothing: a command there could only race its power-off or
  // start a second copy of a VM its evacuation restarts elsewhere. The evacuation fails what is open.
  checkTakesCommands(target ? [host, target] : [host]);
  const jws = await signCommand(commandFor(op, vm, host, target), deps.signer);
  const now = deps.now().toISOString();
  const during = LIFECYCLE[op.action].during;
  // The first dispatch moves the VM to its transitional state; a re-dispatch (the sweep's) does not.
  const changes = during !== undefined && op.status !== "dispatched";
  try {
    await transact(deps.db, [
      // From queued (`scheduling` in records written before it was dropped), or a re-dispatch.
      dispatchedOp(deps, op, host, ["queued", "scheduling", "dispatched"], now),
      ...(changes
        ? [
            {
              Update: updateOf(
                deps.db.table,
                keys.vm(vm.id),
                { set: { state: during, updatedAt: now }, inc: { version: 1 } },
                { expr: "doneSeq = :prev", values: { ":prev": op.seq - 1 } },
              ),
            },
          ]
        : []),
      dispatchedEvent(deps, op, vm, host, target, changes ? { from: vm.state, to: during } : undefined),
    ]);
  } catch (err) {
    if (failedConditions(err)?.length)
      return deps.log.debug("operation moved on while dispatching", { opId: op.id });
    throw err;
  }
  await send(deps, op, vm, host, jws);
}
