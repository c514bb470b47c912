/**
 * Host maintenance as the API and the sweep see it: drain, evacuate, confirm, enable, each answering
 * with the host and its progress; and the sweep's pass that carries drains and evacuations on (so
 * neither is lost when a process dies midway). See drain.ts, evacuate.ts and evacuation.ts.
 */
import type { Principal } from "../auth/principal.ts";
import type { Host } from "../contracts/host.ts";
import { ConflictError, ErrorCode, NotFoundError } from "../errors.ts";
import { queryAll, updateOf } from "../store/base.ts";
import { failedConditions } from "../store/errors.ts";
import { type HostItem, hostView } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";
import { drainHost, drainStatus, progressDrain } from "./drain.ts";
import { confirmEvacuation, evacuateHost, expireFence } from "./evacuate.ts";
import { continueEvacuation, evacuationStatus } from "./evacuation.ts";
import { eventItem } from "./events.ts";
import { transactOnHost } from "./host-records.ts";
import { checkManualStateChange, getHostItem } from "./hosts.ts";

type Ctx = { principal: Principal; requestId: string };

/** `GET /v1/hosts/{id}`: the host with its drain's and evacuation's progress. */
export async function getHostDetail(deps: Deps, id: string): Promise<Host> {
  const host = await getHostItem(deps, id);
  if (!host) throw new NotFoundError("host", id);
  const [drain, evacuation] = await Promise.all([drainStatus(deps, host), evacuationStatus(deps, host)]);
  return { ...hostView(host), drain, evacuation };
}

export async function requestDrain(deps: Deps, ctx: Ctx, id: string): Promise<Host> {
  await drainHost(deps, ctx, id);
  return getHostDetail(deps, id);
}

export async function requestEvacuation(deps: Deps, ctx: Ctx, id: string): Promise<Host> {
  await evacuateHost(deps, ctx, id);
  return getHostDetail(deps, id);
}

export async function requestEvacuationConfirm(deps: Deps, ctx: Ctx, id: string): Promise<Host> {
  await confirmEvacuation(deps, ctx, id);
  return getHostDetail(deps, id);
}

/**
 * `POST /v1/hosts/{id}/enable`: back into placement, ending a drain (migrations already submitted go
 * on as ordinary operations) or a finished evacuation. A `down` host is enabled when it next reports.
 * Refused while a fence is in progress or an evacuation is restarting VMs.
 */
export async function enableHost(deps: Deps, ctx: Ctx, id: string): Promise<Host> {
  const host = await getHostItem(deps, id);
  if (!host) throw new NotFoundError("host", id);
  checkManualStateChange(host);
  if (host.state !== "enabled") {
    const now = deps.now().toISOString();
    const down = host.state === "down";
    try {
      await transactOnHost(deps, [
        {
          // From the state (and evacuation step) we read: a fence or evacuation starting meanwhile wins.
          Update: updateOf(
            deps.db.table,
            keys.host(id),
            down
              ? { set: { stateBeforeDown: "enabled", updatedAt: now } }
              : {
                  set: { state: "enabled", updatedAt: now },
                  remove: ["drain", "evacuation", "stateBeforeDown"],
                },
            {
              expr: "#state = :from AND (attribute_not_exists(#ev) OR #ev.#st = :ev)",
              names: { "#state": "state", "#ev": "evacuation", "#st": "status" },
              values: { ":from": host.state, ":ev": host.evacuation?.status ?? "none" },
            },
          ),
        },
        eventItem(deps, {
          subjectPk: keys.host(id).pk,
          type: "host.enabled",
          requestId: ctx.requestId,
          actor: ctx.principal.subject,
          data: { from: host.state, ...(down ? { whenBackUp: true } : {}) },
        }),
      ]);
    } catch (err) {
      if (failedConditions(err)?.includes(0))
        throw new ConflictError(ErrorCode.conflict, `host ${id} changed state meanwhile; try again`);
      throw err;
    }
  }
  return getHostDetail(deps, id);
}

export type MaintenanceReport = { drained: number; fenceTimeouts: number; evacuating: number };

/** The sweep's pass: drains finish or submit what is missing, fences time out, evacuations go on. */
export async function sweepMaintenance(deps: Deps): Promise<MaintenanceReport> {
  const report: MaintenanceReport = { drained: 0, fenceTimeouts: 0, evacuating: 0 };
  const listed = await queryAll<HostItem>(deps.db, {
    IndexName: "gsi1",
    KeyConditionExpression: "gsi1pk = :pk",
    FilterExpression: "#state IN (:draining, :fencing, :fenced)",
    ExpressionAttributeNames: { "#state": "state" },
    ExpressionAttributeValues: {
      ":pk": "HOSTS",
      ":draining": "draining",
      ":fencing": "fencing",
      ":fenced": "fenced",
    },
  });
  for (const { id } of listed) {
    try {
      // The listing is an index (eventually consistent): act on the record itself.
      const host = await getHostItem(deps, id);
      if (host?.state === "draining" && (await progressDrain(deps, host, { retryFailed: false })))
        report.drained++;
      else if (host?.state === "fencing" && (await expireFence(deps, host))) report.fenceTimeouts++;
      else if (host?.state === "fenced" && host.evacuation?.status === "evacuating") {
        report.evacuating++;
        await continueEvacuation(deps, id);
      }
    } catch (err) {
      deps.log.error("sweep could not carry host maintenance on", { err, hostId: id });
    }
  }
  return report;
}
