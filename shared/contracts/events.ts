import { z } from "zod";
import { Timestamp } from "./common.ts";
import { Page } from "./vm.ts";

/** One entry of the append-only event log (`vm.created`, `op.succeeded`, `api.request`, …). */
export const Event = z
  .object({
    id: z.string(),
    /** What happened: `vm.created`, `op.succeeded`, `host.down`, `api.request`, … */
    type: z.string(),
    /** What it is about: `VM#<id>`, `HOST#<id>`, `CLUSTER#<id>`, `PROJ#<project>` (audit records). */
    subject: z.string(),
    /** Absent for events that belong to no project (hosts). */
    project: z.string().nullable(),
    requestId: z.string().nullable(),
    opId: z.string().nullable(),
    /** Who caused it (a token's subject), when someone did. */
    actor: z.string().nullable(),
    data: z.record(z.string(), z.unknown()),
    at: z.string(),
  })
  .meta({ id: "Event" });
export type Event = z.infer<typeof Event>;

export const EventList = Page(Event).meta({ id: "EventList" });
export type EventList = z.infer<typeof EventList>;

/** How an API request ended, as `api.request` events record it. */
export const RequestOutcome = z.enum(["accepted", "rejected", "failed"]);
export type RequestOutcome = z.infer<typeof RequestOutcome>;

/** `GET /v1/events` filters (besides `limit` and `cursor`). Every filter given must hold. */
export const EventFilter = z.object({
  /** Admins only: another project's events (`-`: requests made without a valid token). */
  project: z.string().min(1).max(128).optional(),
  /** An event type (`vm.created`), or a prefix when it ends with `.` (`op.`). */
  type: z
    .string()
    .regex(/^[a-z0-9_.-]{1,64}$/)
    .optional(),
  /** The events of one subject, e.g. `VM#vm-…`, `CLUSTER#cl-…`; admins may read `HOST#<id>`. */
  subject: z
    .string()
    .max(256)
    .regex(/^[A-Z]+#./, "a subject is a partition such as VM#<id> or HOST#<id>")
    .optional(),
  /** Shorthand for `subject=VM#<vmId>`. */
  vmId: z.string().min(1).max(64).optional(),
  requestId: z.string().min(1).max(64).optional(),
  opId: z.string().min(1).max(64).optional(),
  /** From this time (inclusive). */
  since: Timestamp.optional(),
  /** Before this time (exclusive). */
  until: Timestamp.optional(),
  /** `api.request` events that ended so. */
  outcome: RequestOutcome.optional(),
  /**
   * Events of this action, exactly. `api.request` records name the request's action: `vm.create`,
   * `vm.start` (an action on a VM is `vm.<action>`), `vm.delete`, `cluster.reboot`,
   * `vm.lease.renew`, `event.list`, … (`<METHOD> <path>` for a route without a name). Operation
   * events (`op.*`) carry the bare operation's action (`start`), so `action=start` finds those.
   */
  action: z.string().min(1).max(128).optional(),
  /** Events caused by this subject (a token's `sub`): its requests, and the changes they made. */
  actor: z.string().min(1).max(256).optional(),
});
export type EventFilter = z.infer<typeof EventFilter>;
