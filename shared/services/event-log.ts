/**
 * Reading the event log (`GET /v1/events`): a project's events newest first, filtered and paged.
 *
 * Two ways in, both newest first with time bounds on the sort key (event ids are ULIDs, so the id
 * orders by creation time):
 * - no subject: the project's index (gsi1 `PROJ#<project>#EV`), which holds every event that has a
 *   project — VM, operation, cluster, drift and `api.request` events;
 * - a subject (`subject=` or `vmId=`): that subject's own partition. Users get a `project = theirs`
 *   filter on it, so naming another project's VM yields nothing; admins read any partition,
 *   including `HOST#<id>`, whose events belong to no project (narrowed to `?project=` when given).
 *
 * Only admins name another project. `-` is the pseudo-project of requests without a project (made
 * without a valid token, see the audit plugin): admins only, even for a token that claims it.
 */
import { encodeTime } from "ulid";
import { isAdmin, type Principal } from "../auth/principal.ts";
import type { Event, EventFilter } from "../contracts/events.ts";
import { ErrorCode, UsherError, ValidationError } from "../errors.ts";
import { encodeCursor, type Page, queryPage } from "../store/base.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";

/** Where events of requests that carry no project (unauthenticated ones) are filed. */
export const UNSCOPED_PROJECT = "-";

/** An event as stored (see events.ts `eventItem`). */
export type EventItem = {
  pk: string;
  sk: string;
  gsi1pk?: string;
  gsi1sk?: string;
  type: "event";
  id: string;
  eventType: string;
  subject: string;
  project?: string;
  requestId?: string;
  opId?: string;
  actor?: string;
  data?: Record<string, unknown>;
  at: string;
};

export function eventView(e: EventItem): Event {
  return {
    id: e.id,
    type: e.eventType,
    subject: e.subject,
    project: e.project ?? null,
    requestId: e.requestId ?? null,
    opId: e.opId ?? null,
    actor: e.actor ?? null,
    data: e.data ?? {},
    at: e.at,
  };
}

/** A filtered query may read this many index pages to fill one page of results before answering. */
const MAX_READS = 5;

/**
 * Sort-key bounds for event ids created in [since, until): the ULID's first ten characters are its
 * time, so `ev-<time>` is below every id of that millisecond and above every earlier one.
 */
export function idBounds(since?: string, until?: string): { lo: string; hi: string } {
  const at = (iso: string) => `ev-${encodeTime(Date.parse(iso), 10).toLowerCase()}`;
  return { lo: since ? at(since) : "ev-", hi: until ? at(until) : "ev-~" };
}

/** The filter expression for what the key cannot select. */
export function filterOf(
  filter: Pick<EventFilter, "type" | "requestId" | "opId" | "outcome" | "action" | "actor">,
  project?: string,
): { expr?: string; names: Record<string, string>; values: Record<string, unknown> } {
  const parts: string[] = [];
  const names: Record<string, string> = {};
  const values: Record<string, unknown> = {};
  const eq = (name: string, value: string, path = `#${name}`) => {
    parts.push(`${path} = :${name}`);
    values[`:${name}`] = value;
  };
  if (project !== undefined) {
    names["#project"] = "project";
    eq("project", project);
  }
  if (filter.type?.endsWith(".")) {
    names["#type"] = "eventType";
    parts.push("begins_with(#type, :type)");
    values[":type"] = filter.type;
  } else if (filter.type) {
    names["#type"] = "eventType";
    eq("type", filter.type);
  }
  if (filter.requestId) {
    names["#requestId"] = "requestId";
    eq("requestId", filter.requestId);
  }
  if (filter.opId) {
    names["#opId"] = "opId";
    eq("opId", filter.opId);
  }
  if (filter.actor) {
    names["#actor"] = "actor";
    eq("actor", filter.actor);
  }
  if (filter.outcome) {
    names["#data"] = "data";
    names["#outcome"] = "outcome";
    eq("outcome", filter.outcome, "#data.#outcome");
  }
  if (filter.action) {
    names["#data"] = "data";
    names["#action"] = "action";
    eq("action", filter.action, "#data.#action");
  }
  return { ...(parts.length ? { expr: parts.join(" AND ") } : {}), names, values };
}

/** The project a caller's listing reads: their own, or for admins the one they name. */
function projectOf(principal: Principal, asked: string | undefined): string {
  const admin = isAdmin(principal);
  if (asked !== undefined && asked !== principal.project && !admin)
    throw new UsherError(ErrorCode.forbidden, "only admins may read another project's events");
  const project = asked ?? principal.project;
  if (project === UNSCOPED_PROJECT && !admin)
    throw new UsherError(ErrorCode.forbidden, "the events of requests without a project are for admins only");
  return project;
}

/** `GET /v1/events`: the caller's project's events (admins: any), newest first. */
export async function listEvents(
  deps: Deps,
  principal: Principal,
  filter: EventFilter,
  page: { limit: number; cursor?: string | undefined },
): Promise<Page<Event>> {
  const vmSubject = filter.vmId ? keys.vm(filter.vmId).pk : undefined;
  if (vmSubject && filter.subject && filter.subject !== vmSubject)
    throw new ValidationError("vmId and subject name different subjects");
  const subject = filter.subject ?? vmSubject;
  if (filter.since && filter.until && Date.parse(filter.since) >= Date.parse(filter.until))
    throw new ValidationError("since must be before until");
  const project = projectOf(principal, filter.project);
  const { lo, hi } = idBounds(filter.since, filter.until);

  // A subject's partition: users (and admins who name a project) only see that project's events in it.
  const scoped = !isAdmin(principal) || filter.project !== undefined;
  const where = filterOf(filter, subject && scoped ? project : undefined);
  const key = subject
    ? {
        KeyConditionExpression: "pk = :pk AND sk BETWEEN :lo AND :hi",
        values: { ":pk": subject, ":lo": keys.event(subject, lo).sk, ":hi": keys.event(subject, hi).sk },
      }
    : {
        IndexName: "gsi1",
        KeyConditionExpression: "gsi1pk = :pk AND gsi1sk BETWEEN :lo AND :hi",
        values: { ":pk": keys.eventProjectIndex(project, "").gsi1pk, ":lo": lo, ":hi": hi },
      };
  const { values, ...keyCondition } = key;
  const input = {
    ...keyCondition,
    ScanIndexForward: false,
    ExpressionAttributeValues: { ...values, ...where.values },
    ...(where.expr ? { FilterExpression: where.expr, ExpressionAttributeNames: where.names } : {}),
  };

  // A filter may leave a page short: read on (a few pages at most) to fill it. When the page fills
  // part-way through what was read, the cursor resumes after the last event returned.
  const items: EventItem[] = [];
  let cursor = page.cursor;
  for (let reads = 0; reads < MAX_READS; reads++) {
    const out = await queryPage<EventItem>(deps.db, input, { limit: page.limit, cursor });
    for (const [i, item] of out.items.entries()) {
      items.push(item);
      if (items.length < page.limit) continue;
      const exhausted = i === out.items.length - 1 && !out.nextCursor;
      return {
        items: items.map(eventView),
        nextCursor: exhausted ? null : encodeCursor(keyOf(item, !subject)),
      };
    }
    if (!out.nextCursor) return { items: items.map(eventView), nextCursor: null };
    cursor = out.nextCursor;
  }
  return { items: items.map(eventView), nextCursor: cursor ?? null };
}

/** An item's primary key (plus its gsi1 key when the query is on gsi1): a query's start key. */
function keyOf(item: EventItem, index: boolean): Record<string, unknown> {
  return index
    ? { pk: item.pk, sk: item.sk, gsi1pk: item.gsi1pk, gsi1sk: item.gsi1sk }
    : { pk: item.pk, sk: item.sk };
}
