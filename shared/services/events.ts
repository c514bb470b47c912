/**
 * The append-only event log: one item per thing that happened, written in the same transaction as the
 * change. An event that plugins are subscribed to also carries its pending notifications (the
 * outbox, see shared/plugins/outbox.ts), so a committed change is never without them.
 */
import { newId } from "../ids.ts";
import { noticeEvents } from "../plugins/notices.ts";
import { notExists, putOf, type TxItem } from "../store/base.ts";
import type { VmItem } from "../store/items.ts";
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
  const at = deps.now().toISOString();
  const pending = noticeEvents(e.type, e.data).flatMap((event) =>
    deps.plugins.subscribers(event).map((plugin) => `${plugin}:${event}`),
  );
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
        at,
        ...(pending.length ? { notify: pending, notifyAttempts: 0, ...keys.notifyIndex(at, id) } : {}),
      },
      notExists,
    ),
  };
}

/**
 * Event data for a VM giving up its home host in the event's transaction: raises `vm_released`, and
 * keeps what plugins acting afterwards need of it (its address is released in that same transaction).
 */
export function leftHomeData(vm: VmItem): Record<string, unknown> {
  if (!vm.hostId) return {};
  return {
    leftHome: vm.hostId,
    vm: { name: vm.name, site: vm.site, ...(vm.network ? { network: vm.network } : {}) },
  };
}
