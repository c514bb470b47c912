/**
 * A VM's operations driven through the real services on a service bed, with the agent's part played
 * here: schedule the operation (placing it, with every claim plugin), then record the result a healthy
 * agent would report. For tests of plugins that act on claims and releases.
 */
import type { Principal } from "../../shared/auth/principal.ts";
import type { PowerState } from "../../shared/contracts/messages.ts";
import type { VmActionRequest } from "../../shared/contracts/vm.ts";
import type { Deps } from "../../shared/services/context.ts";
import { finishOperation } from "../../shared/services/finish.ts";
import { getOpItem } from "../../shared/services/operations.ts";
import { scheduleOperation } from "../../shared/services/scheduling.ts";
import { createVm, getVmItem, requestAction } from "../../shared/services/vms.ts";
import type { OpItem, VmItem } from "../../shared/store/items.ts";

/** The power state a healthy host reports after each action (running for the rest). */
const AFTER: Partial<Record<OpItem["action"], PowerState>> = {
  destroy: "absent",
  delete: "absent",
  shutdown: "stopped",
  pause: "paused",
  suspend: "suspended",
};

let n = 0;
const ctx = (principal: Principal) => ({ principal, requestId: `req-flow-${++n}` });

/** Schedules the operation; when it was dispatched, records the agent's success. Returns it, finished. */
export async function runOp(deps: Deps, opId: string): Promise<OpItem> {
  await scheduleOperation(deps, { opId, requestId: "flow" });
  const op = (await getOpItem(deps, opId))!;
  if (op.status !== "dispatched") return op;
  const vm = await getVmItem(deps, op.vmId);
  const power = AFTER[op.action] ?? "running";
  await finishOperation(
    deps,
    op,
    vm,
    {
      ok: true,
      powerState: power,
      ...(op.action === "migrate" && vm?.migrationHostId ? { finalHostId: vm.migrationHostId } : {}),
    },
    { dispatched: true },
  );
  return (await getOpItem(deps, opId))!;
}

/** Creates a VM and runs its start operation. */
export async function startVm(
  deps: Deps,
  principal: Principal,
  body: { name: string; vcpus?: number; memoryMiB?: number; labels?: Record<string, string> },
): Promise<{ vm: VmItem | undefined; op: OpItem }> {
  const res = await createVm(deps, ctx(principal), { vcpus: 1, memoryMiB: 256, ...body });
  const { vm, operation } = res.body as { vm: { id: string }; operation: { id: string } };
  const op = await runOp(deps, operation.id);
  return { vm: await getVmItem(deps, vm.id), op };
}

/** Submits an action on a VM and runs it. */
export async function actOn(
  deps: Deps,
  principal: Principal,
  vmId: string,
  req: VmActionRequest | { action: "delete" },
): Promise<{ vm: VmItem | undefined; op: OpItem }> {
  const res = await requestAction(deps, ctx(principal), vmId, req);
  const { operation } = res.body as { operation: { id: string } };
  const op = await runOp(deps, operation.id);
  return { vm: await getVmItem(deps, vmId), op };
}
