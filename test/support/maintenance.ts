/**
 * Helpers for the host maintenance service tests (drain, evacuate): hosts in a site of their own,
 * VMs made running by the scheduler as if their agent had reported, operations completed likewise.
 */
import type { HostState } from "../../shared/contracts/common.ts";
import type { Deps } from "../../shared/services/context.ts";
import { finishOperation, type Outcome } from "../../shared/services/finish.ts";
import { createHost } from "../../shared/services/hosts.ts";
import { getOpItem } from "../../shared/services/operations.ts";
import { scheduleOperation } from "../../shared/services/scheduling.ts";
import { createVm, getVmItem, requestAction } from "../../shared/services/vms.ts";
import { queryAll } from "../../shared/store/base.ts";
import type { VmItem } from "../../shared/store/items.ts";
import { keys } from "../../shared/store/keys.ts";
import { admin } from "./services.ts";

export async function addHost(deps: Deps, site: string, id: string, state: HostState = "enabled") {
  await createHost(
    deps,
    { actor: "root", requestId: "req-setup" },
    { id, site, kind: "sim", address: `${id}.sim`, capacity: { vcpus: 8, memoryMiB: 8192 }, state },
  );
}

/** Schedules an operation and records the agent's outcome for it. */
export async function complete(deps: Deps, opId: string, outcome: Outcome): Promise<void> {
  await scheduleOperation(deps, { opId, requestId: "r" });
  const op = (await getOpItem(deps, opId))!;
  await finishOperation(deps, op, await getVmItem(deps, op.vmId), outcome, { dispatched: true });
}

/** A VM created in `site`, placed by the scheduler and recorded running. */
export async function runningVm(deps: Deps, site: string, name: string): Promise<VmItem> {
  const res = await createVm(
    deps,
    { principal: admin, requestId: `req-${name}` },
    { name, site, vcpus: 1, memoryMiB: 256 },
  );
  const { vm, operation } = res.body as { vm: { id: string }; operation: { id: string } };
  await complete(deps, operation.id, { ok: true, powerState: "running" });
  return (await getVmItem(deps, vm.id))!;
}

/** Submits an action as the admin; returns its operation id. */
export async function act(deps: Deps, vmId: string, action: "shutdown" | "reboot" | "delete" | "migrate") {
  const res = await requestAction(deps, { principal: admin, requestId: `req-${action}` }, vmId, { action });
  return (res.body as { operation: { id: string } }).operation.id;
}

/** Event types of a partition (`HOST#…`, `VM#…`), oldest first. */
export async function eventTypes(deps: Deps, pk: string): Promise<string[]> {
  const items = await queryAll<{ eventType: string }>(deps.db, {
    KeyConditionExpression: "pk = :pk AND begins_with(sk, :ev)",
    ExpressionAttributeValues: { ":pk": pk, ":ev": "EV#" },
  });
  return items.map((e) => e.eventType);
}

/** A VM's operations in submission order. */
export async function opsOf(deps: Deps, vmId: string) {
  return queryAll<{ id: string; action: string; status: string; seq: number; error?: { code: string } }>(
    deps.db,
    {
      IndexName: "gsi1",
      KeyConditionExpression: "gsi1pk = :pk",
      ExpressionAttributeValues: { ":pk": keys.opVmIndex(vmId, 0).gsi1pk },
    },
  );
}
