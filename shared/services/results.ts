/**
 * The results consumer's service: verifies an agent's signed report, checks it speaks for hosts of
 * the agent's own site, and records it: progress, the outcome of an operation, or an inventory.
 */

import type { AgentInventory, AgentResult } from "../contracts/messages.ts";
import { ErrorCode, SignatureError } from "../errors.ts";
import { verifyReport } from "../signing/envelopes.ts";
import { transact, updateOf } from "../store/base.ts";
import { failedConditions } from "../store/errors.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";
import { fencedHostReported } from "./evacuate.ts";
import { eventItem } from "./events.ts";
import { finishOperation } from "./finish.ts";
import { getHostItem } from "./hosts.ts";
import { getOpItem, isTerminal } from "./operations.ts";
import { reconcileHost } from "./reconcile.ts";
import { recordTaskResult } from "./tasks.ts";
import { getVmItem } from "./vms.ts";

/** Handles one `results` message (a compact JWS). Refused reports are logged and dropped, never retried. */
export async function handleReport(deps: Deps, token: string): Promise<void> {
  let verified: Awaited<ReturnType<typeof verifyReport>>;
  try {
    verified = await verifyReport(token, deps.agentKey);
  } catch (err) {
    if (err instanceof SignatureError)
      return deps.log.error("agent report refused", { err, details: err.details });
    throw err;
  }
  const { site, report } = verified;
  if (report.type === "inventory") return recordInventory(deps, site, report);
  if (report.type === "task_result") return recordTaskResult(deps, site, report);
  return recordResult(deps, site, report);
}

async function recordResult(deps: Deps, site: string, r: AgentResult): Promise<void> {
  const log = deps.log.child({ opId: r.opId, requestId: r.requestId, vmId: r.vmId, hostId: r.hostId, site });
  const op = await getOpItem(deps, r.opId);
  if (!op) return log.warn("result for an unknown operation dropped");
  const host = await getHostItem(deps, r.hostId);
  const vm = await getVmItem(deps, op.vmId);
  // The command is sent before the operation is marked dispatched, so a fast report may arrive
  // while the operation has no host yet: then the VM's host (claimed before sending) stands for it.
  const sentTo = op.hostId ?? vm?.hostId;
  // An agent speaks only for its own site's hosts, and only about the operation sent to that host.
  if (!host || host.site !== site || sentTo !== r.hostId || op.vmId !== r.vmId) {
    return log.error("result refused: host, site or VM do not match the operation", { opHostId: op.hostId });
  }
  if (isTerminal(op)) return log.debug("result for a finished operation ignored", { status: r.status });
  if (r.status === "running") {
    try {
      await transact(deps.db, [
        {
          // Progress only moves a dispatched operation forward; it never revives a finished one.
          Update: updateOf(
            deps.db.table,
            keys.op(op.id),
            {
              set: {
                status: "running",
                updatedAt: deps.now().toISOString(),
                ...(r.progressPercent === undefined ? {} : { progressPercent: r.progressPercent }),
              },
            },
            {
              expr: "#s IN (:d, :r)",
              names: { "#s": "status" },
              values: { ":d": "dispatched", ":r": "running" },
            },
          ),
        },
        ...(op.status === "dispatched"
          ? [
              eventItem(deps, {
                subjectPk: keys.vm(op.vmId).pk,
                project: op.project,
                type: "op.running",
                requestId: op.requestId,
                opId: op.id,
                data: { hostId: r.hostId },
              }),
            ]
          : []),
      ]);
    } catch (err) {
      if (!failedConditions(err)?.length) throw err;
    }
    return;
  }
  // A migration succeeds only onto the target this operation claimed (or the claims would not follow).
  if (op.action === "migrate" && r.status === "succeeded" && (!r.finalHostId || r.finalHostId === r.hostId)) {
    return log.error("result refused: a migration's success must name its target host", {
      finalHostId: r.finalHostId,
    });
  }
  if (r.finalHostId && r.finalHostId !== r.hostId) {
    const target = await getHostItem(deps, r.finalHostId);
    if (!vm || vm.migrationHostId !== r.finalHostId || target?.site !== site) {
      return log.error("result refused: migration target does not match the operation", {
        finalHostId: r.finalHostId,
      });
    }
  }
  const outcome =
    r.status === "succeeded"
      ? { ok: true as const, powerState: r.powerState, finalHostId: r.finalHostId }
      : {
          ok: false as const,
          error: r.error ?? { code: ErrorCode.driverFailed, message: "the agent reported a failure" },
          powerState: r.powerState,
        };
  await finishOperation(deps, op, vm, outcome, { dispatched: true });
}

/**
 * An inventory: a heartbeat for each host the agent could reach (a `down` host comes back up), then
 * reconciliation of its domains against the records. Unreachable hosts get no heartbeat, so the
 * sweep marks them down once `hostDownAfterSeconds` pass.
 */
async function recordInventory(deps: Deps, site: string, inv: AgentInventory): Promise<void> {
  for (const h of inv.hosts) {
    const host = await getHostItem(deps, h.hostId);
    if (!host || host.site !== site) {
      deps.log.warn("inventory for a host that is not registered in this site ignored", {
        hostId: h.hostId,
        site,
      });
      continue;
    }
    const summary = {
      reachable: h.reachable,
      domains: h.domains.length,
      free: h.free,
      load: h.load,
      error: h.error,
      at: inv.at,
    };
    const up = h.reachable && host.state === "down";
    try {
      await transact(deps.db, [
        {
          // The agent's own site only; a host coming back restores the state it had before it went down.
          Update: updateOf(
            deps.db.table,
            keys.host(h.hostId),
            {
              set: {
                inventory: summary,
                ...(h.reachable ? { lastHeartbeatAt: inv.at } : {}),
                ...(up ? { state: host.stateBeforeDown ?? "enabled" } : {}),
              },
              remove: up ? ["stateBeforeDown"] : [],
            },
            {
              expr: "#site = :site AND #state = :state",
              names: { "#site": "site", "#state": "state" },
              values: { ":site": site, ":state": host.state },
            },
          ),
        },
        ...(up
          ? [
              eventItem(deps, {
                subjectPk: keys.host(h.hostId).pk,
                type: "host.up",
                data: { agentId: inv.agentId },
              }),
            ]
          : []),
      ]);
    } catch (err) {
      if (!failedConditions(err)?.length) throw err;
      continue; // the host changed meanwhile; the next inventory tries again
    }
    // A host being fenced, or fenced, is the evacuation's: its guests are not drift to correct, but a
    // running one may show that the fence did not hold.
    if (host.state === "fencing" || host.state === "fenced") await fencedHostReported(deps, host, h, inv.at);
    else await reconcileHost(deps, h, inv.at);
  }
}
