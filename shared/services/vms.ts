/** VM requests: create, read, list, and every action (including delete), each recorded as an operation. */

import { isAdmin, type Principal } from "../auth/principal.ts";
import type { VmState } from "../contracts/common.ts";
import type { CreateVm, Vm, VmActionRequest } from "../contracts/vm.ts";
import { ConflictError, ErrorCode, NotFoundError, UsherError, ValidationError } from "../errors.ts";
import { newId } from "../ids.ts";
import {
  getItem,
  notExists,
  type Page,
  putOf,
  queryPage,
  type TxItem,
  transact,
  updateOf,
} from "../store/base.ts";
import { failedConditions, isTransactionConflict } from "../store/errors.ts";
import { type HostItem, type OpItem, opView, type VmItem, vmView } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";
import { eventItem } from "./events.ts";
import { type IdempotencyRequest, idempotent, type StoredResponse } from "./idempotency.ts";
import { canStart } from "./lifecycle.ts";
import { enqueueOps, newOp, putOpItem } from "./operations.ts";

export type RequestContext = {
  principal: Principal;
  requestId: string;
  idempotency?: IdempotencyRequest | undefined;
};

/** A new VM record (state `pending`, one operation submitted) and the items that create it. */
export function newVmItems(
  deps: Deps,
  ctx: RequestContext,
  input: {
    name: string;
    site: string;
    spec: VmItem["spec"];
    labels?: VmItem["labels"] | undefined;
    clusterId?: string;
    /** Placement constraints, kept apart from the spec (which agents receive). */
    placement?: VmItem["placement"] | undefined;
    /** The start operation's arguments (as request plugins left them). */
    args?: Record<string, unknown>;
  },
): { vm: VmItem; op: OpItem; items: TxItem[] } {
  const now = deps.now().toISOString();
  const vm: VmItem = {
    type: "vm",
    id: newId("vm"),
    name: input.name,
    project: ctx.principal.project,
    owner: ctx.principal.subject,
    ...(input.clusterId ? { clusterId: input.clusterId } : {}),
    site: input.site,
    spec: input.spec,
    labels: input.labels ?? {},
    ...(input.placement ? { placement: input.placement } : {}),
    state: "pending",
    opSeq: 1,
    doneSeq: 0,
    version: 1,
    createdAt: now,
    updatedAt: now,
  };
  const op = newOp(deps, {
    vm,
    action: "start",
    ...(input.args && Object.keys(input.args).length ? { args: input.args } : {}),
    principal: ctx.principal,
    requestId: ctx.requestId,
    idempotencyKey: ctx.idempotency?.key,
    seq: 1,
  });
  const items: TxItem[] = [
    // One name per project: the reservation fails if another VM holds the name.
    {
      Put: putOf(
        deps.db.table,
        { ...keys.vmName(vm.project, vm.name), type: "vmname", vmId: vm.id },
        notExists,
      ),
    },
    {
      Put: putOf(
        deps.db.table,
        {
          ...vm,
          ...keys.vm(vm.id),
          ...keys.vmIndex(vm.project, vm.id),
          ...(input.clusterId ? keys.vmClusterIndex(input.clusterId, vm.id) : {}),
        },
        notExists,
      ),
    },
    putOpItem(deps, op),
  ];
  return { vm, op, items };
}

/** `POST /v1/vms`: records the VM and its start operation in one transaction, then enqueues it. */
export async function createVm(deps: Deps, ctx: RequestContext, body: CreateVm): Promise<StoredResponse> {
  // A lease is asked for, not part of the VM: it travels to the leases plugin as the start's argument.
  const { name, labels, site: askedSite, leaseSeconds, placement, ...asked } = body;
  const site = askedSite ?? deps.config.defaultSite;
  return idempotent(deps, ctx.idempotency, async (record) => {
    // Site policy first: a veto or a failing policy plugin refuses the request before anything is written.
    const { spec, args } = await deps.plugins.beforeAction(deps, {
      action: "start",
      principal: ctx.principal,
      requestId: ctx.requestId,
      project: ctx.principal.project,
      site,
      spec: asked,
      args: leaseSeconds === undefined ? {} : { leaseSeconds },
      create: { name, labels },
    });
    const { vm, op, items } = newVmItems(deps, ctx, { name, site, spec, labels, placement, args });
    const response = { status: 202, body: { vm: vmView(vm), operation: opView(op) } };
    const event = eventItem(deps, {
      subjectPk: keys.vm(vm.id).pk,
      project: vm.project,
      type: "vm.created",
      requestId: ctx.requestId,
      opId: op.id,
      actor: ctx.principal.subject,
      data: { name, spec },
    });
    try {
      await transact(deps.db, [...items, event, ...record(response)]);
    } catch (err) {
      if (failedConditions(err)?.includes(0))
        throw new ConflictError(ErrorCode.nameTaken, `a VM named ${name} already exists in this project`);
      throw err;
    }
    await enqueueOps(deps, [op]);
    return response;
  });
}

export async function getVmItem(deps: Deps, id: string): Promise<VmItem | undefined> {
  return getItem<VmItem>(deps.db, keys.vm(id));
}

/** A VM the caller may see. Another project's VM answers exactly like a missing one. */
export async function getVisibleVmItem(deps: Deps, principal: Principal, id: string): Promise<VmItem> {
  const vm = await getVmItem(deps, id);
  if (!vm || (vm.project !== principal.project && !isAdmin(principal))) throw new NotFoundError("VM", id);
  return vm;
}

export async function getVm(deps: Deps, principal: Principal, id: string): Promise<Vm> {
  return vmView(await getVisibleVmItem(deps, principal, id));
}

export type VmFilter = {
  state?: VmState | undefined;
  clusterId?: string | undefined;
  project?: string | undefined;
};

/** The caller's project's VMs (admins may name another project), newest last, filtered and paged. */
export async function listVms(
  deps: Deps,
  principal: Principal,
  filter: VmFilter,
  page: { limit: number; cursor?: string | undefined },
): Promise<Page<Vm>> {
  const project = filter.project && isAdmin(principal) ? filter.project : principal.project;
  const values: Record<string, unknown> = {};
  const filters: string[] = [];
  if (filter.state) {
    filters.push("#state = :state");
    values[":state"] = filter.state;
  }
  let query: Parameters<typeof queryPage>[1];
  if (filter.clusterId) {
    filters.push("#project = :project");
    values[":project"] = project;
    values[":pk"] = keys.vmClusterIndex(filter.clusterId, "").gsi2pk;
    query = { IndexName: "gsi2", KeyConditionExpression: "gsi2pk = :pk" };
  } else {
    values[":pk"] = keys.vmIndex(project, "").gsi1pk;
    query = { IndexName: "gsi1", KeyConditionExpression: "gsi1pk = :pk" };
  }
  const out = await queryPage<VmItem>(
    deps.db,
    {
      ...query,
      ExpressionAttributeValues: values,
      ...(filters.length ? { FilterExpression: filters.join(" AND ") } : {}),
      ...(filters.length
        ? {
            ExpressionAttributeNames: {
              ...(filter.state ? { "#state": "state" } : {}),
              ...(filter.clusterId ? { "#project": "project" } : {}),
            },
          }
        : {}),
    },
    page,
  );
  return { items: out.items.map(vmView), nextCursor: out.nextCursor };
}

/**
 * Submits an action on one VM. The operation takes the VM's next sequence number, so a VM's
 * operations run one at a time in submission order. When nothing is queued ahead of it, an action
 * the VM's state cannot take is refused at once (409); otherwise the scheduler decides in turn.
 */
export async function requestAction(
  deps: Deps,
  ctx: RequestContext,
  vmId: string,
  req: VmActionRequest | { action: "delete" },
  opts: {
    deferStateCheck?: boolean;
    /** A migration only from this host: moot (refused in turn) if the VM left it meanwhile (drains). */
    fromHostId?: string;
  } = {},
): Promise<StoredResponse> {
  const { principal } = ctx;
  const args: Record<string, unknown> = opts.fromHostId ? { fromHostId: opts.fromHostId } : {};
  if ("targetHostId" in req && req.targetHostId !== undefined) {
    if (!isAdmin(principal)) throw new UsherError(ErrorCode.forbidden, "targetHostId is for admins only");
    if (req.action !== "migrate" && req.action !== "start")
      throw new ValidationError("targetHostId applies to migrate and start only");
    const host = await getItem<HostItem>(deps.db, keys.host(req.targetHostId));
    if (!host) throw new NotFoundError("host", req.targetHostId);
    args.targetHostId = req.targetHostId;
  }
  if ("live" in req && req.live !== undefined) {
    if (req.action !== "migrate") throw new ValidationError("live applies to migrate only");
    args.live = req.live;
  }
  return idempotent(deps, ctx.idempotency, async (record) => {
    let adjusted: Record<string, unknown> | undefined;
    for (let attempt = 0; ; attempt++) {
      const vm = await getVisibleVmItem(deps, principal, vmId);
      // Site policy, once, before anything is written (a retry of the sequence number keeps its answer).
      adjusted ??= (
        await deps.plugins.beforeAction(deps, {
          action: req.action,
          principal,
          requestId: ctx.requestId,
          project: vm.project,
          site: vm.site,
          spec: vm.spec,
          args,
          vm,
        })
      ).args;
      if (!opts.deferStateCheck && vm.opSeq === vm.doneSeq && !canStart(req.action, vm.state)) {
        throw new ConflictError(ErrorCode.invalidState, `cannot ${req.action} a VM that is ${vm.state}`, {
          details: { state: vm.state, action: req.action },
        });
      }
      const op = newOp(deps, {
        vm,
        action: req.action,
        args: adjusted,
        principal,
        requestId: ctx.requestId,
        idempotencyKey: ctx.idempotency?.key,
        seq: vm.opSeq + 1,
      });
      const response = { status: 202, body: { operation: opView(op) } };
      try {
        await transact(deps.db, [
          // Takes the next sequence number: fails if another submission took it first (then we retry).
          {
            Update: updateOf(
              deps.db.table,
              keys.vm(vm.id),
              { set: { opSeq: op.seq } },
              { expr: "opSeq = :prev", values: { ":prev": vm.opSeq } },
            ),
          },
          putOpItem(deps, op),
          ...record(response),
        ]);
      } catch (err) {
        // Another submission took the sequence number, or another transaction touched the VM: retry.
        if ((failedConditions(err)?.includes(0) || isTransactionConflict(err)) && attempt < 10) continue;
        if (attempt >= 10)
          throw new ConflictError(ErrorCode.conflict, "the VM is changing too often; try again", {
            cause: err,
          });
        throw err;
      }
      // Always enqueue: the scheduler drops an operation that is not yet its VM's turn, and the
      // operation ahead of it enqueues its successor when it finishes.
      await enqueueOps(deps, [op]);
      return response;
    }
  });
}
