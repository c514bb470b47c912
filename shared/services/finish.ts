/**
 * Finishing an operation: one transaction records the outcome, moves the VM to what is now true,
 * releases capacity that is no longer held, advances the VM's turn, and appends the event. Then the
 * VM's next operation, if one waits, is enqueued.
 */
import type { ErrorInfo } from "../contracts/common.ts";
import type { PowerState } from "../contracts/messages.ts";
import { vmChanges } from "../plugins/contributions.ts";
import { deleteOf, queryAll, type TxItem, transact, updateOf } from "../store/base.ts";
import { failedConditions } from "../store/errors.ts";
import type { ClaimItem, OpItem, VmItem } from "../store/items.ts";
import { keys, pad } from "../store/keys.ts";
import { getClaim, releaseItems } from "./capacity.ts";
import type { Deps } from "./context.ts";
import { eventItem, leftHomeData } from "./events.ts";
import { LIFECYCLE, stateFromPower } from "./lifecycle.ts";
import { enqueueOps } from "./operations.ts";

export type Outcome =
  | { ok: true; powerState?: PowerState | undefined; finalHostId?: string | undefined }
  | { ok: false; error: ErrorInfo; powerState?: PowerState | undefined };

type Plan = {
  set: Record<string, unknown>;
  remove: string[];
  release: (string | undefined)[];
  deleteVm: boolean;
};

/** What the VM becomes, which claims go. `dispatched`: whether the command may have reached a host. */
function plan(op: OpItem, vm: VmItem, outcome: Outcome, dispatched: boolean): Plan {
  const p: Plan = { set: {}, remove: [], release: [], deleteVm: false };
  const power = outcome.powerState;
  const rule = LIFECYCLE[op.action];
  if (outcome.ok) {
    if (op.action === "delete") {
      p.deleteVm = true;
      p.release.push(vm.hostId, vm.migrationHostId);
    } else if (rule.releases) {
      p.release.push(vm.hostId, vm.migrationHostId);
      p.remove.push("hostId", "migrationHostId");
      p.set.state = "destroyed";
    } else if (op.action === "migrate") {
      p.release.push(vm.hostId);
      p.set.hostId = outcome.finalHostId ?? vm.migrationHostId;
      p.remove.push("migrationHostId");
      p.set.state = power ? stateFromPower(power) : rule.after;
    } else if (power === "absent") {
      // The host says the domain is gone (e.g. a shutdown that undefined it): it holds nothing now.
      p.release.push(vm.hostId, vm.migrationHostId);
      p.remove.push("hostId", "migrationHostId");
      p.set.state = "destroyed";
    } else {
      p.set.state = power ? stateFromPower(power) : rule.after;
    }
    return p;
  }
  // Failure. Claims this operation made are undone only when nothing can be running on them.
  if (op.action === "migrate" && dispatched) {
    // The agent observes the source. Running or paused there: the migration did not happen, the
    // target claim goes. Anything else (absent on the source, or unknown): the domain may be on the
    // target, so both claims stay and the VM is in error until reconciled or destroyed.
    if (power === "running" || power === "paused") {
      p.release.push(vm.migrationHostId);
      p.remove.push("migrationHostId");
      p.set.state = stateFromPower(power);
    } else {
      p.set.state = "error";
    }
    return p;
  }
  if (vm.migrationHostId) {
    p.release.push(vm.migrationHostId);
    p.remove.push("migrationHostId");
  }
  const gone = !dispatched || power === "absent";
  if (op.action === "start" && gone) {
    p.release.push(vm.hostId);
    p.remove.push("hostId");
    p.set.state = vm.state === "pending" || dispatched ? "error" : vm.state;
  } else if (!dispatched) {
    p.set.state = vm.state === "pending" ? "error" : vm.state;
  } else if (power === "absent") {
    p.release.push(vm.hostId);
    p.remove.push("hostId");
    p.set.state = "destroyed";
  } else {
    // The domain may be in any state: trust the agent's observation, else say we do not know.
    p.set.state = power ? stateFromPower(power) : "error";
  }
  return p;
}

/**
 * Records an operation's outcome. Returns false when it was already terminal (a duplicate report).
 * For a failure before dispatch only claims made by this operation are released.
 */
export async function finishOperation(
  deps: Deps,
  op: OpItem,
  vm: VmItem | undefined,
  outcome: Outcome,
  opts: { dispatched: boolean },
): Promise<boolean> {
  const now = deps.now().toISOString();
  const status = outcome.ok ? "succeeded" : "failed";
  const items: TxItem[] = [
    {
      // Only once: a duplicate result or a racing sweep finds the operation terminal and stops here.
      Update: updateOf(
        deps.db.table,
        keys.op(op.id),
        {
          set: {
            status,
            finishedAt: now,
            updatedAt: now,
            ...(outcome.ok ? { progressPercent: 100 } : { error: outcome.error }),
          },
          remove: ["gsi2pk", "gsi2sk"],
        },
        {
          expr: "#s IN (:q, :sc, :d, :r)",
          names: { "#s": "status" },
          values: { ":q": "queued", ":sc": "scheduling", ":d": "dispatched", ":r": "running" },
        },
      ),
    },
  ];
  let released: ClaimItem[] = [];
  let stateChange: { from: string; to: string } | undefined;
  let leftHome = false;
  if (vm) {
    const p = plan(op, vm, outcome, opts.dispatched);
    released = await claimsToRelease(deps, vm, op, p, outcome.ok || opts.dispatched);
    const to = p.deleteVm ? "deleted" : (p.set.state as string | undefined);
    if (to && to !== vm.state) stateChange = { from: vm.state, to };
    // The VM leaves its home host: resource plugins (addresses, quotas) give back in this transaction.
    const leavesHome = vm.hostId !== undefined && released.some((c) => c.hostId === vm.hostId);
    // Released its home host and has none after (a migration moves home, keeping its address).
    leftHome = leavesHome && !("hostId" in p.set);
    const contributions = leavesHome ? await deps.plugins.release(deps, { op, vms: [vm] }) : [];
    const extra = vmChanges(contributions, vm.id);
    // The VM's turn advances by exactly one: this operation must be the one whose turn it was.
    const turn = { expr: "doneSeq = :prev", values: { ":prev": op.seq - 1 } };
    if (p.deleteVm) {
      items.push({ Delete: deleteOf(deps.db.table, keys.vm(vm.id), turn) });
      items.push({
        Delete: deleteOf(deps.db.table, keys.vmName(vm.project, vm.name), {
          expr: "vmId = :id",
          values: { ":id": vm.id },
        }),
      });
    } else {
      const set = { ...extra.set, ...p.set, doneSeq: op.seq, updatedAt: now };
      // On failure a host reference goes only with its claim (a claim older than this operation stays).
      const kept = (f: string) => {
        const hostId = f === "hostId" ? vm.hostId : f === "migrationHostId" ? vm.migrationHostId : undefined;
        return hostId !== undefined && !released.some((c) => c.hostId === hostId);
      };
      const remove = [
        ...p.remove.filter((f) => !(f in set) && (outcome.ok || !kept(f))),
        ...extra.remove.filter((f) => !(f in set) && !p.remove.includes(f)),
      ];
      items.push({
        Update: updateOf(deps.db.table, keys.vm(vm.id), { set, remove, inc: { version: 1 } }, turn),
      });
    }
    for (const claim of released) items.push(...releaseItems(deps, claim));
    for (const c of contributions) items.push(...c.items);
  }
  items.push(
    eventItem(deps, {
      subjectPk: keys.vm(op.vmId).pk,
      project: op.project,
      type: `op.${status}`,
      requestId: op.requestId,
      opId: op.id,
      data: {
        action: op.action,
        ...(outcome.ok ? {} : { error: outcome.error }),
        released: released.map((c) => c.hostId),
        ...(stateChange ? { state: stateChange } : {}),
        // The address may be released in this very transaction (destroy, delete, a failed start):
        // plugins that act on it afterwards (DNS) find it here.
        ...(vm && leftHome ? leftHomeData(vm) : {}),
      },
    }),
  );
  try {
    await transact(deps.db, items);
  } catch (err) {
    if (failedConditions(err)?.includes(0)) return false;
    throw err;
  }
  deps.log.info(`operation ${status}`, {
    opId: op.id,
    requestId: op.requestId,
    vmId: op.vmId,
    action: op.action,
    ...(outcome.ok ? {} : { error: outcome.error }),
  });
  await enqueueNext(deps, op);
  return true;
}

async function claimsToRelease(
  deps: Deps,
  vm: VmItem,
  op: OpItem,
  p: Plan,
  anyOwner: boolean,
): Promise<ClaimItem[]> {
  const hostIds = [...new Set(p.release.filter((h): h is string => !!h))];
  const claims = await Promise.all(hostIds.map((h) => getClaim(deps, h, vm.id)));
  // Before dispatch, only this operation's own claims are undone; after it, whatever the VM held.
  return claims.filter((c): c is ClaimItem => !!c && (anyOwner || c.opId === op.id));
}

/** Enqueues the VM's next operation, now that it is its turn. */
export async function enqueueNext(deps: Deps, op: Pick<OpItem, "vmId" | "seq">): Promise<void> {
  const next = await queryAll<OpItem>(deps.db, {
    IndexName: "gsi1",
    KeyConditionExpression: "gsi1pk = :pk AND gsi1sk = :sk",
    ExpressionAttributeValues: { ":pk": keys.opVmIndex(op.vmId, 0).gsi1pk, ":sk": pad(op.seq + 1) },
  });
  await enqueueOps(
    deps,
    next.filter((o) => o.status === "queued"),
  );
}
