/**
 * The notification outbox. An event that plugins subscribe to is written with `notify` (the pending
 * `plugin:event` pairs) and an entry in the sparse `NOTIFY` index, in the same transaction as the
 * change itself, so a committed change always has its notifications. This delivers what is due:
 * it leases an event (a conditional move of its due time, so two deliverers do not run it at once),
 * calls each pending plugin in config order, and then either drops the event from the index (all
 * delivered) or keeps the failures with a doubled delay. A plugin that keeps failing is given up after
 * `maxAttempts`, logged at error with the event id: the operation itself never waited for it.
 *
 * Runs in the consumers (a short loop locally, the scheduled sweep on AWS, where a DynamoDB stream
 * could trigger it instead).
 */

import type { Deps } from "../services/context.ts";
import { queryPage, transact, updateOf } from "../store/base.ts";
import { failedConditions, isTransactionConflict } from "../store/errors.ts";
import { keys } from "../store/keys.ts";
import type { Notice, NotifyEvent } from "./types.ts";

type EventItem = {
  pk: string;
  sk: string;
  id: string;
  eventType: string;
  subject: string;
  project?: string;
  requestId?: string;
  opId?: string;
  data?: Record<string, unknown>;
  at: string;
  notify: string[];
  notifyAttempts: number;
  gsi2sk: string;
};

export type DeliveryReport = { due: number; delivered: number; retrying: number; givenUp: number };

/** How long a deliverer holds an event before another may take it over. */
const LEASE_SECONDS = 60;

export async function deliverNotifications(
  deps: Deps,
  opts: { limit?: number } = {},
): Promise<DeliveryReport> {
  const now = deps.now();
  const page = await queryPage<EventItem>(
    deps.db,
    {
      IndexName: "gsi2",
      KeyConditionExpression: "gsi2pk = :pk AND gsi2sk <= :now",
      // "~" sorts after every event id, so everything due up to this instant is included.
      ExpressionAttributeValues: { ":pk": "NOTIFY", ":now": `${now.toISOString()}~` },
    },
    { limit: opts.limit ?? 50 },
  );
  const report: DeliveryReport = { due: page.items.length, delivered: 0, retrying: 0, givenUp: 0 };
  for (const ev of page.items) {
    const leased = await lease(deps, ev, now);
    if (!leased) continue;
    const failed: string[] = [];
    for (const pair of ev.notify) {
      const [plugin, event] = pair.split(":") as [string, NotifyEvent];
      try {
        await deps.plugins.notify(deps, plugin, notice(ev, event));
      } catch (err) {
        failed.push(pair);
        deps.log.warn("notification failed; will retry", {
          plugin,
          event,
          eventId: ev.id,
          attempt: ev.notifyAttempts,
          requestId: ev.requestId,
          err,
        });
      }
    }
    const outcome = await settle(deps, ev, leased, failed);
    report[outcome]++;
  }
  return report;
}

function notice(ev: EventItem, event: NotifyEvent): Notice {
  return {
    event,
    eventId: ev.id,
    type: ev.eventType,
    subject: ev.subject,
    project: ev.project,
    requestId: ev.requestId,
    opId: ev.opId,
    data: ev.data ?? {},
    at: ev.at,
    attempt: ev.notifyAttempts,
  };
}

/** Moves the event's due time past the lease; undefined when another deliverer moved it first. */
async function lease(deps: Deps, ev: EventItem, now: Date): Promise<string | undefined> {
  const until = keys.notifyIndex(new Date(now.getTime() + LEASE_SECONDS * 1000).toISOString(), ev.id).gsi2sk;
  try {
    await transact(deps.db, [
      {
        // Only the deliverer that saw this due time takes it: no two run the same notification at once.
        Update: updateOf(
          deps.db.table,
          { pk: ev.pk, sk: ev.sk },
          { set: { gsi2sk: until } },
          { expr: "gsi2sk = :seen", values: { ":seen": ev.gsi2sk } },
        ),
      },
    ]);
    return until;
  } catch (err) {
    if (failedConditions(err)?.length || isTransactionConflict(err)) return undefined;
    throw err;
  }
}

async function settle(
  deps: Deps,
  ev: EventItem,
  leased: string,
  failed: string[],
): Promise<"delivered" | "retrying" | "givenUp"> {
  const cfg = deps.plugins.notifications;
  const attempts = ev.notifyAttempts + 1;
  const giveUp = failed.length > 0 && attempts >= cfg.maxAttempts;
  let changes: Parameters<typeof updateOf>[2];
  if (!failed.length) changes = { remove: ["notify", "gsi2pk", "gsi2sk"], set: { notifyAttempts: attempts } };
  else if (giveUp) {
    changes = {
      remove: ["notify", "gsi2pk", "gsi2sk"],
      set: { notifyAttempts: attempts, notifyGivenUp: failed },
    };
  } else {
    const delay = Math.min(cfg.retryDelaySeconds * 2 ** (attempts - 1), cfg.maxDelaySeconds);
    const due = new Date(deps.now().getTime() + delay * 1000).toISOString();
    changes = {
      set: { notify: failed, notifyAttempts: attempts, gsi2sk: keys.notifyIndex(due, ev.id).gsi2sk },
    };
  }
  try {
    await transact(deps.db, [
      {
        // Only while our lease holds: a deliverer that took over after it ran out settles instead.
        Update: updateOf(deps.db.table, { pk: ev.pk, sk: ev.sk }, changes, {
          expr: "gsi2sk = :mine",
          values: { ":mine": leased },
        }),
      },
    ]);
  } catch (err) {
    if (!failedConditions(err)?.length) throw err;
    deps.log.warn("notification lease ran out before it settled", { eventId: ev.id });
  }
  if (giveUp)
    deps.log.error("notification given up after repeated failures", {
      eventId: ev.id,
      pending: failed,
      attempts,
      requestId: ev.requestId,
    });
  return !failed.length ? "delivered" : giveUp ? "givenUp" : "retrying";
}
