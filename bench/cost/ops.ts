/**
 * One VM's life, end to end through the metered rig, one operation at a time: the API request, the
 * scheduler's invocation, the command on the agent's queue, the agent's `running` and final reports,
 * the results consumer's invocations. What each operation cost is taken from the meter after it.
 */
import {
  type AgentCommand,
  type AgentResult,
  type PowerState,
  resultOf,
} from "../../shared/contracts/messages.ts";
import { getOpItem } from "../../shared/services/operations.ts";
import type { Meter, Tally } from "./meter.ts";
import type { Rig } from "./rig.ts";

/** The operation kinds measured, in the order one VM goes through them. */
export const OP_KINDS = [
  "create+start",
  "shutdown",
  "start",
  "reboot",
  "migrate",
  "destroy",
  "delete",
] as const;
export type OpKind = (typeof OP_KINDS)[number];

/** What a healthy host reports after each action. */
const POWER_AFTER: Partial<Record<AgentCommand["action"], PowerState>> = {
  shutdown: "stopped",
  destroy: "absent",
  delete: "absent",
};

/** The body of `POST /v1/vms`: the same small VM as section 4's. */
const vmBody = (name: string) => ({ name, vcpus: 2, memoryMiB: 2048, image: "debian-12" });

/** The agent's part for one command: `running`, then success, then the command deleted. */
async function agentCarriesOut(rig: Rig, site: string): Promise<void> {
  const { cmd, receiptHandle } = await rig.agentReceive(site);
  const base = resultOf(cmd);
  await rig.agentReport(site, { ...base, status: "running", at: new Date().toISOString() });
  await rig.deliver("results");
  const done: AgentResult = {
    ...base,
    status: "succeeded",
    powerState: POWER_AFTER[cmd.action] ?? "running",
    ...(cmd.target ? { finalHostId: cmd.target.hostId } : {}),
    hypervisorMs: 1200,
    at: new Date().toISOString(),
  };
  await rig.agentReport(site, done);
  await rig.agentDelete(site, receiptHandle);
  await rig.deliver("results");
}

/** Schedules `opId` and, when it was dispatched, plays the agent; fails unless it succeeded. */
async function carryOut(rig: Rig, site: string, opId: string): Promise<void> {
  await rig.deliver("ops");
  const op = await getOpItem(rig.inspect, opId);
  if (op?.status === "dispatched") await agentCarriesOut(rig, site);
  const after = await getOpItem(rig.inspect, opId);
  if (after?.status !== "succeeded")
    throw new Error(
      `operation ${opId} (${op?.action}) ended ${after?.status}: ${JSON.stringify(after?.error)}`,
    );
}

/** Creates and starts a VM (the agent reporting it running); returns its id. Its cost is left in the meter. */
export async function startVm(rig: Rig, site: string, name: string): Promise<string> {
  const created = await rig.api("POST", "/v1/vms", vmBody(name));
  await carryOut(rig, site, (created.operation as { id: string }).id);
  return (created.vm as { id: string }).id;
}

/** Runs every kind once on a new VM named `name`; returns what each cost, and a status read's cost. */
export async function runLifecycle(
  rig: Rig,
  meter: Meter,
  site: string,
  name: string,
): Promise<{ kinds: Record<OpKind, Tally>; statusRead: Tally }> {
  meter.take();
  const kinds = {} as Record<OpKind, Tally>;
  const created = await rig.api("POST", "/v1/vms", vmBody(name));
  const vmId = (created.vm as { id: string }).id;
  let opId = (created.operation as { id: string }).id;
  await carryOut(rig, site, opId);
  kinds["create+start"] = meter.take();

  // A client asking how its operation went (no wait): the cheapest status read.
  await rig.api("GET", `/v1/operations/${opId}`);
  const statusRead = meter.take();

  for (const kind of OP_KINDS.slice(1)) {
    const res =
      kind === "delete"
        ? await rig.api("DELETE", `/v1/vms/${vmId}`)
        : await rig.api("POST", `/v1/vms/${vmId}/actions`, { action: kind });
    opId = (res.operation as { id: string }).id;
    await carryOut(rig, site, opId);
    kinds[kind] = meter.take();
  }
  return { kinds, statusRead };
}
