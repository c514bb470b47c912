/** Operations: creating their records, reading them (project-scoped), waiting on them, enqueuing them. */

import { isAdmin, type Principal } from "../auth/principal.ts";
import { type OpAction, TERMINAL_OP_STATUSES } from "../contracts/common.ts";
import type { Operation } from "../contracts/vm.ts";
import { NotFoundError } from "../errors.ts";
import { newId } from "../ids.ts";
import { getItem, notExists, type Page, putOf, queryPage, type TxItem } from "../store/base.ts";
import { type OpItem, opView, type VmItem } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";

export type OpInput = {
  vm: VmItem;
  action: OpAction;
  args?: Record<string, unknown>;
  principal: Principal;
  requestId: string;
  idempotencyKey?: string | undefined;
  seq: number;
};

export function newOp(deps: Deps, input: OpInput): OpItem {
  const now = deps.now();
  return {
    type: "op",
    id: newId("op"),
    vmId: input.vm.id,
    action: input.action,
    args: input.args ?? {},
    status: "queued",
    requester: input.principal.subject,
    project: input.vm.project,
    requestId: input.requestId,
    ...(input.idempotencyKey ? { idempotencyKey: input.idempotencyKey } : {}),
    site: input.vm.site,
    attempts: 0,
    seq: input.seq,
    deadline: new Date(now.getTime() + deps.config.opTimeoutSeconds * 1000).toISOString(),
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
  };
}

/** The Put of a new operation, with its index keys. */
export function putOpItem(deps: Deps, op: OpItem): TxItem {
  return {
    // A new id: the condition only guards against an id collision overwriting another operation.
    Put: putOf(
      deps.db.table,
      {
        ...op,
        ...keys.op(op.id),
        ...keys.opVmIndex(op.vmId, op.seq),
        ...keys.opOpenIndex(op.deadline, op.id),
      },
      notExists,
    ),
  };
}

export const isTerminal = (op: Pick<OpItem, "status">) => TERMINAL_OP_STATUSES.includes(op.status);

export async function getOpItem(deps: Deps, id: string): Promise<OpItem | undefined> {
  return getItem<OpItem>(deps.db, keys.op(id));
}

/** An operation the caller may see; another project's answers exactly like a missing one. */
export async function getVisibleOp(deps: Deps, principal: Principal, id: string): Promise<Operation> {
  const op = await getOpItem(deps, id);
  if (!op || (op.project !== principal.project && !isAdmin(principal)))
    throw new NotFoundError("operation", id);
  return opView(op);
}

/** Long-polls until the operation is terminal or `waitSeconds` pass; returns its latest view. */
export async function waitForOp(
  deps: Deps,
  principal: Principal,
  id: string,
  waitSeconds: number,
): Promise<Operation> {
  const until = Date.now() + waitSeconds * 1000;
  let op = await getVisibleOp(deps, principal, id);
  while (!isTerminal(op) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, Math.min(200, Math.max(0, until - Date.now()))));
    op = await getVisibleOp(deps, principal, id);
  }
  return op;
}

/** A VM's operations in submission order. */
export async function listOps(
  deps: Deps,
  principal: Principal,
  vmId: string,
  page: { limit: number; cursor?: string | undefined },
): Promise<Page<Operation>> {
  const out = await queryPage<OpItem>(
    deps.db,
    {
      IndexName: "gsi1",
      KeyConditionExpression: "gsi1pk = :pk",
      ExpressionAttributeValues: {
        ":pk": keys.opVmIndex(vmId, 0).gsi1pk,
        ...(isAdmin(principal) ? {} : { ":p": principal.project }),
      },
      ...(isAdmin(principal)
        ? {}
        : { FilterExpression: "#p = :p", ExpressionAttributeNames: { "#p": "project" } }),
    },
    page,
  );
  return { items: out.items.map(opView), nextCursor: out.nextCursor };
}

/**
 * Sends operations to the `ops` queue. A failed send is logged, not thrown: the operation is already
 * recorded as `queued`, and the sweep re-sends queued operations, so nothing is lost.
 */
export async function enqueueOps(
  deps: Deps,
  ops: Pick<OpItem, "id" | "requestId" | "vmId">[],
): Promise<void> {
  if (ops.length === 0) return;
  try {
    await deps.queues.sendOps(ops.map((o) => ({ opId: o.id, requestId: o.requestId, vmId: o.vmId })));
  } catch (err) {
    deps.log.warn("ops queue send failed; the sweep will re-send", { err, opIds: ops.map((o) => o.id) });
  }
}
