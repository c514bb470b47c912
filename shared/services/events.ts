/** The append-only event log: one item per thing that happened, written in the same transaction as the change. */
import { newId } from "../ids.ts";
import { notExists, putOf, type TxItem } from "../store/base.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";

export type EventInput = {
  /** Partition of the thing the event is about: `VM#…`, `HOST#…`, `CLUSTER#…`. */
  subjectPk: string;
  project?: string | undefined;
  type: string;
  requestId?: string | undefined;
  opId?: string | undefined;
  actor?: string | undefined;
  data?: Record<string, unknown>;
};

export function eventItem(deps: Deps, e: EventInput): TxItem {
  const id = newId("ev");
  return {
    // Never overwrite an event: the log is append-only.
    Put: putOf(
      deps.db.table,
      {
        ...keys.event(e.subjectPk, id),
        ...(e.project ? keys.eventProjectIndex(e.project, id) : {}),
        type: "event",
        id,
        eventType: e.type,
        subject: e.subjectPk,
        project: e.project,
        requestId: e.requestId,
        opId: e.opId,
        actor: e.actor,
        data: e.data,
        at: deps.now().toISOString(),
      },
      notExists,
    ),
  };
}
