/**
 * The results consumer's service: verifies an agent's signed report, checks it speaks for hosts of
 * the agent's own site, and records it: progress, the outcome of an operation, or an inventory.
 */

import { UpdateCommand } from "@aws-sdk/lib-dynamodb";
import type { AgentInventory, AgentResult, HostInventory } from "../contracts/messages.ts";
import { ErrorCode, SignatureError } from "../errors.ts";
import { verifyReport } from "../signing/envelopes.ts";
import { transact, updateOf } from "../store/base.ts";
import { failedConditions, isConditionFailed } from "../store/errors.ts";
import type { HostItem, InventorySummary } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";
import { fencedHostReported } from "./evacuate.ts";
import { eventItem } from "./events.ts";
import { finishOperation } from "./finish.ts";
import { getHostItem } from "./hosts.ts";
import { getOpItem, isTerminal } from "./operations.ts";
import { eachAtOnce, readHostRecords, reconcileHost } from "./reconcile.ts";
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
  // All three at once. The host only for its site, which never changes: an eventually consistent read.
  const [op, host, reported] = await Promise.all([
    getOpItem(deps, r.opId),
    getHostItem(deps, r.hostId, false),
    getVmItem(deps, r.vmId),
  ]);
  if (!op) return log.warn("result for an unknown operation dropped");
  const vm = op.vmId === r.vmId ? reported : undefined;
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

/** Hosts of one inventory part whose heartbeat (or reconciliation) is written at once. */
const HOSTS_AT_ONCE = 8;

/**
 * An inventory (or one part of it: each part is recorded on its own): a heartbeat for each host the
 * agent could reach (a `down` host comes back up), then reconciliation of its domains against the
 * records, `HOSTS_AT_ONCE` hosts at a time, the records of all the part's hosts read together.
 * Unreachable hosts get no heartbeat, so the sweep marks them down once `hostDownAfterSeconds` pass.
 * A host that fails fails the part (its message is delivered again) once every other host is done.
 */
async function recordInventory(deps: Deps, site: string, inv: AgentInventory): Promise<void> {
  const started = performance.now();
  const beaten: { h: HostInventory; host: HostItem }[] = [];
  const failures: unknown[] = [];
  await eachAtOnce(inv.hosts, HOSTS_AT_ONCE, async (h) => {
    const host = await recordHeartbeat(deps, site, inv, h);
    if (host) beaten.push({ h, host });
  }).catch((err) => failures.push(err));
  // A host being fenced, or fenced, is the evacuation's: its guests are not drift to correct, but a
  // running one may show that the fence did not hold.
  const fenced = ({ host }: { host: HostItem }) => host.state === "fencing" || host.state === "fenced";
  const compared = beaten.filter((b) => !fenced(b) && b.h.reachable);
  const records = await readHostRecords(
    deps,
    compared.map((b) => b.h.hostId),
  );
  await eachAtOnce(beaten, HOSTS_AT_ONCE, async (b) => {
    if (fenced(b)) await fencedHostReported(deps, b.host, b.h, inv.at);
    else await reconcileHost(deps, b.h, inv.at, records.get(b.h.hostId));
  }).catch((err) => failures.push(err));
  if (failures.length) throw failures[0];
  deps.log.debug("inventory recorded", {
    agentId: inv.agentId,
    at: inv.at,
    part: inv.part,
    last: inv.last,
    hosts: inv.hosts.length,
    ms: Math.round(performance.now() - started),
  });
}

/** A host's heartbeat and summary; the host as recorded, or undefined when nothing was recorded. */
async function recordHeartbeat(
  deps: Deps,
  site: string,
  inv: AgentInventory,
  h: HostInventory,
): Promise<HostItem | undefined> {
  const summary: InventorySummary = {
    reachable: h.reachable,
    domains: h.domains.length,
    free: h.free,
    load: h.load,
    error: h.error,
    at: inv.at,
  };
  return (
    (await heartbeat(deps, site, inv, h, summary)) ?? (await heartbeatAfterRead(deps, site, inv, h, summary))
  );
}

/**
 * The heartbeat of a host that is not down, nearly every host of every inventory: one conditional
 * write, no read before it. Undefined when the condition fails (the host is down, or not this site's).
 */
async function heartbeat(
  deps: Deps,
  site: string,
  inv: AgentInventory,
  h: HostInventory,
  summary: InventorySummary,
): Promise<HostItem | undefined> {
  try {
    const out = await deps.db.doc.send(
      new UpdateCommand({
        // The agent's own site only, and not a host that is down: that one comes back up below,
        // restoring its state and recording the event, in one transaction.
        ...updateOf(
          deps.db.table,
          keys.host(h.hostId),
          { set: { inventory: summary, ...(h.reachable ? { lastHeartbeatAt: inv.at } : {}) } },
          {
            expr: "#site = :site AND #state <> :down",
            names: { "#site": "site", "#state": "state" },
            values: { ":site": site, ":down": "down" },
          },
        ),
        ReturnValues: "ALL_NEW",
      }),
    );
    return out.Attributes as HostItem;
  } catch (err) {
    if (isConditionFailed(err)) return undefined;
    throw err;
  }
}

/**
 * The heartbeat of a host the quick write left alone (as every inventory did before it existed): read
 * it, ignore it if it is not this site's (or not registered), and bring it back up if it is down and
 * reachable. Undefined when nothing was recorded.
 */
async function heartbeatAfterRead(
  deps: Deps,
  site: string,
  inv: AgentInventory,
  h: HostInventory,
  summary: InventorySummary,
): Promise<HostItem | undefined> {
  const host = await getHostItem(deps, h.hostId);
  if (!host || host.site !== site) {
    deps.log.warn("inventory for a host that is not registered in this site ignored", {
      hostId: h.hostId,
      site,
    });
    return undefined;
  }
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
    return undefined; // the host changed meanwhile; the next inventory tries again
  }
  return host; // as read: a host that came back up is reconciled as before
}
