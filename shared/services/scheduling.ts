/**
 * The scheduling consumer's service: takes an operation whose turn it is, places it when it needs a
 * host (claiming capacity atomically), and sends the signed command to the agent of the host's site.
 * Safe to run for the same operation more than once, concurrently or after a crash.
 */
import type { AgentCommand, OpsMessage } from "../contracts/messages.ts";
import { ErrorCode, UsherError } from "../errors.ts";
import { signCommand } from "../signing/envelopes.ts";
import { transact, updateOf } from "../store/base.ts";
import { failedConditions } from "../store/errors.ts";
import type { HostItem, OpItem, VmItem } from "../store/items.ts";
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

const fail = (code: string, message: string, details?: Record<string, unknown>) =>
  ({ ok: false, error: { code, message, ...(details ? { details } : {}) } }) as const;

/** Handles one `ops` message. Throws only on failures worth a redelivery (DynamoDB, SQS). */
export async function scheduleOperation(deps: Deps, msg: OpsMessage): Promise<void> {
  const log = deps.log.child({ opId: msg.opId, requestId: msg.requestId });
  const op = await getOpItem(deps, msg.opId);
  if (!op) return log.warn("operation not found; message dropped");
  if (isTerminal(op) || op.status === "dispatched" || op.status === "running") return;
  const vm = await getVmItem(deps, op.vmId);
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
  const taken = await markScheduling(deps, op);
  if (!taken) return;
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
    const host = await place(deps, vm, op, { field: "hostId", only, cluster });
    // Read again: resource plugins set fields (the address) the command carries.
    return dispatch(deps, op, (await getVmItem(deps, vm.id)) ?? vm, host);
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
      : await place(deps, vm, op, { field: "migrationHostId", only, exclude: vm.hostId, kind: source.kind });
    return dispatch(deps, op, vm, source, target);
  }
  return dispatch(deps, op, vm, source);
}

function required(host: HostItem | undefined, id: string | undefined): HostItem {
  if (!host) throw new UsherError(ErrorCode.hostUnavailable, `host ${id ?? "(none)"} is not registered`);
  return host;
}

/** queued|scheduling → scheduling, counting the attempt. Returns undefined if another handler moved it on. */
async function markScheduling(deps: Deps, op: OpItem): Promise<OpItem | undefined> {
  const now = deps.now().toISOString();
  try {
    await transact(deps.db, [
      {
        // Only from queued or scheduling: never pull back an operation already with an agent.
        Update: updateOf(
          deps.db.table,
          keys.op(op.id),
          { set: { status: "scheduling", updatedAt: now }, inc: { attempts: 1 } },
          {
            expr: "#s IN (:q, :sc)",
            names: { "#s": "status" },
            values: { ":q": "queued", ":sc": "scheduling" },
          },
        ),
      },
    ]);
  } catch (err) {
    if (failedConditions(err)?.length) return undefined;
    throw err;
  }
  return { ...op, status: "scheduling", attempts: op.attempts + 1, updatedAt: now };
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
  for (const h of target ? [host, target] : [host]) {
    if (h.state === "fencing" || h.state === "fenced") {
      throw new UsherError(ErrorCode.hostUnavailable, `host ${h.id} is ${h.state}: it takes no commands`, {
        details: { hostId: h.id, state: h.state },
      });
    }
  }
  const cmd: AgentCommand = {
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
  const jws = await signCommand(cmd, deps.signer);
  const now = deps.now().toISOString();
  const during = LIFECYCLE[op.action].during;
  try {
    await transact(deps.db, [
      {
        // From scheduling only (or a re-dispatch of a dispatched one): a concurrent handler's wins.
        Update: updateOf(
          deps.db.table,
          keys.op(op.id),
          { set: { status: "dispatched", hostId: host.id, attempts: op.attempts, updatedAt: now } },
          {
            expr: "#s IN (:sc, :d)",
            names: { "#s": "status" },
            values: { ":sc": "scheduling", ":d": "dispatched" },
          },
        ),
      },
      ...(during && op.status === "scheduling"
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
      eventItem(deps, {
        subjectPk: keys.vm(vm.id).pk,
        project: vm.project,
        type: "op.dispatched",
        requestId: op.requestId,
        opId: op.id,
        data: {
          hostId: host.id,
          action: op.action,
          ...(target ? { targetHostId: target.id } : {}),
          ...(during && op.status === "scheduling" ? { state: { from: vm.state, to: during } } : {}),
        },
      }),
    ]);
  } catch (err) {
    if (failedConditions(err)?.length)
      return deps.log.debug("operation moved on while dispatching", { opId: op.id });
    throw err;
  }
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
