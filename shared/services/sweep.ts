/**
 * The sweep, run on a schedule: nothing is lost and nothing waits forever. It re-sends operations
 * whose queue message seems lost, re-sends commands an agent never acknowledged, and fails
 * operations past their deadline with `deadline_exceeded`.
 */

import type { HostState } from "../contracts/common.ts";
import { ErrorCode } from "../errors.ts";
import { queryAll, transact, updateOf } from "../store/base.ts";
import { failedConditions } from "../store/errors.ts";
import type { HostItem, OpItem } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";
import { eventItem } from "./events.ts";
import { finishOperation } from "./finish.ts";
import { getHostItem } from "./hosts.ts";
import { type MaintenanceReport, sweepMaintenance } from "./maintenance.ts";
import { enqueueOps, getOpItem } from "./operations.ts";
import { dispatch } from "./scheduling.ts";
import { getVmItem } from "./vms.ts";

export type SweepReport = {
  open: number;
  resent: number;
  redispatched: number;
  expired: number;
  hostsDown: number;
  /** Drains finished, fences timed out, evacuations carried on (see maintenance.ts). */
  maintenance: MaintenanceReport;
};

export async function sweep(deps: Deps): Promise<SweepReport> {
  const now = deps.now().getTime();
  const open = await queryAll<OpItem>(deps.db, {
    IndexName: "gsi2",
    KeyConditionExpression: "gsi2pk = :pk",
    ExpressionAttributeValues: { ":pk": "OPEN" },
  });
  const report: SweepReport = {
    open: open.length,
    resent: 0,
    redispatched: 0,
    expired: 0,
    hostsDown: await markSilentHostsDown(deps),
    maintenance: { drained: 0, fenceTimeouts: 0, evacuating: 0 },
  };
  const age = (op: OpItem) => (now - Date.parse(op.updatedAt)) / 1000;
  const firstPerVm = new Map<string, OpItem>();
  for (const op of open) {
    const prev = firstPerVm.get(op.vmId);
    if (!prev || op.seq < prev.seq) firstPerVm.set(op.vmId, op);
  }
  const resend: OpItem[] = [];
  for (const op of open) {
    const pastDeadline = now > Date.parse(op.deadline);
    const withAgent = op.status === "dispatched" || op.status === "running";
    try {
      if (
        pastDeadline &&
        (!withAgent || now > Date.parse(op.deadline) + deps.config.deadlineGraceSeconds * 1000)
      ) {
        const vm = await getVmItem(deps, op.vmId);
        // Only the operation whose turn it is may finish with its VM: a later one waits for its turn
        // (then the scheduler fails it past its deadline, advancing the VM), so no VM is left stuck
        // behind an operation that can never finish. Without a VM, it fails on its own.
        if (vm && vm.doneSeq !== op.seq - 1) continue;
        const mine = vm;
        const message = withAgent
          ? "the agent did not report within the deadline; the VM's state is unknown until reconciled"
          : "the operation's deadline passed before it could run";
        if (
          await finishOperation(
            deps,
            op,
            mine,
            { ok: false, error: { code: ErrorCode.deadlineExceeded, message } },
            { dispatched: withAgent },
          )
        )
          report.expired++;
      } else if (
        (op.status === "queued" || op.status === "scheduling") &&
        firstPerVm.get(op.vmId) === op &&
        age(op) > deps.config.resendAfterSeconds
      ) {
        resend.push(op);
      } else if (op.status === "dispatched" && age(op) > deps.config.redispatchAfterSeconds) {
        await redispatch(deps, op);
        report.redispatched++;
      }
    } catch (err) {
      deps.log.error("sweep could not handle an operation", { err, opId: op.id, requestId: op.requestId });
    }
  }
  await enqueueOps(deps, resend);
  report.resent = resend.length;
  report.maintenance = await sweepMaintenance(deps);
  // Time-driven site policy (lease expiry, say): each plugin's failure is logged, never stops the sweep.
  await deps.plugins.sweep(deps);
  const { drained, fenceTimeouts, evacuating } = report.maintenance;
  if (
    report.resent ||
    report.redispatched ||
    report.expired ||
    report.hostsDown ||
    drained ||
    fenceTimeouts ||
    evacuating
  )
    deps.log.info("sweep", report);
  return report;
}

/** Sends the command again; the agent recognises work it already did by the VM id in the domain's metadata. */
async function redispatch(deps: Deps, listed: OpItem): Promise<void> {
  // The index is eventually consistent and the listing may be seconds old: act on the record itself.
  const op = await getOpItem(deps, listed.id);
  if (op?.status !== "dispatched") return;
  const vm = await getVmItem(deps, op.vmId);
  const host = op.hostId ? await getHostItem(deps, op.hostId) : undefined;
  if (!vm || !host) return;
  const target =
    op.action === "migrate" && vm.migrationHostId ? await getHostItem(deps, vm.migrationHostId) : undefined;
  // Never to a fenced host (or one being fenced): its evacuation fails the operation instead.
  if ([host, target].some((h) => h?.state === "fencing" || h?.state === "fenced")) return;
  deps.log.warn("re-sending a command the agent has not acknowledged", {
    opId: op.id,
    requestId: op.requestId,
    hostId: host.id,
  });
  await dispatch(deps, { ...op, attempts: op.attempts + 1 }, vm, host, target);
}

const SILENT_STATES: readonly HostState[] = ["down", "fencing", "fenced"];

/** Marks `down` every host whose agent has not reported it reachable within `hostDownAfterSeconds`. */
async function markSilentHostsDown(deps: Deps): Promise<number> {
  const now = deps.now();
  const cutoff = now.getTime() - deps.config.hostDownAfterSeconds * 1000;
  const hosts = await queryAll<HostItem>(deps.db, {
    IndexName: "gsi1",
    KeyConditionExpression: "gsi1pk = :pk",
    ExpressionAttributeValues: { ":pk": "HOSTS" },
  });
  let marked = 0;
  for (const host of hosts) {
    const seen = host.lastHeartbeatAt ?? host.createdAt;
    // Being fenced or fenced: silent on purpose (powered off), and out of placement already.
    if (SILENT_STATES.includes(host.state) || Date.parse(seen) > cutoff) continue;
    try {
      await transact(deps.db, [
        {
          // Only if no report arrived meanwhile and nobody changed the host's state.
          Update: updateOf(
            deps.db.table,
            keys.host(host.id),
            { set: { state: "down", stateBeforeDown: host.state, updatedAt: now.toISOString() } },
            {
              expr: "#state = :state AND (attribute_not_exists(lastHeartbeatAt) OR lastHeartbeatAt = :seen)",
              names: { "#state": "state" },
              values: { ":state": host.state, ":seen": seen },
            },
          ),
        },
        eventItem(deps, {
          subjectPk: keys.host(host.id).pk,
          type: "host.down",
          data: {
            lastHeartbeatAt: host.lastHeartbeatAt ?? null,
            afterSeconds: deps.config.hostDownAfterSeconds,
          },
        }),
      ]);
      deps.log.warn("host marked down: no report from its agent", {
        hostId: host.id,
        lastHeartbeatAt: host.lastHeartbeatAt,
      });
      marked++;
    } catch (err) {
      if (!failedConditions(err)?.length) throw err;
    }
  }
  return marked;
}
