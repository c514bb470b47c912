/**
 * Audit: every API request, accepted or rejected, as an `api.request` event in the event log — who
 * (subject), in which project, what (action, method, path), how it ended (status, outcome, problem
 * code) and its request id, which the request's other events (`vm.created`, `op.*`) carry too.
 * Readable at `GET /v1/events?type=api.request`.
 *
 * Each record is filed under the project the request acted on (subject `PROJ#<project>`, in the
 * project's event index), so that project's users read it: the caller's own, or for an admin's
 * request on another project's VM, cluster or listing, that project — with the admin's own project
 * as `data.actorProject`. A request with no project — one refused before a token was verified — goes
 * under the pseudo-project `-`, which only admins can read. Readable by who made it
 * (`?actor=<subject>`) and what it did (`?action=vm.start`).
 *
 * Runs after the response is decided and never delays or fails it; a failed write is retried by the
 * plugin host, so a record may (rarely) be written twice with the same request id.
 */
import { PutCommand } from "@aws-sdk/lib-dynamodb";
import { UNSCOPED_PROJECT } from "../../services/event-log.ts";
import { type EventInput, eventItem } from "../../services/events.ts";
import type { Plugin, RequestRecord } from "../types.ts";

export type AuditOptions = {
  /** Unique per config; defaults to `audit`. */
  name?: string;
  /** Record reads (GET, HEAD) too. Default true: every request, as the issue asks. */
  reads?: boolean;
};

/** The event log entry for one request record. */
export function auditEvent(rec: RequestRecord): EventInput {
  const project = rec.project ?? UNSCOPED_PROJECT;
  return {
    subjectPk: `PROJ#${project}`,
    project,
    type: "api.request",
    requestId: rec.requestId,
    actor: rec.subject,
    data: {
      action: rec.action,
      method: rec.method,
      path: rec.path,
      status: rec.status,
      outcome: rec.outcome,
      ...(rec.code ? { code: rec.code } : {}),
      ...(rec.actorProject !== undefined && rec.actorProject !== project
        ? { actorProject: rec.actorProject }
        : {}),
      startedAt: rec.at,
      durationMs: rec.durationMs,
    },
  };
}

export function audit(options: AuditOptions = {}): Plugin {
  const reads = options.reads ?? true;
  return {
    name: options.name ?? "audit",
    runsIn: "control-plane",
    hooks: {
      request: async (ctx, rec: RequestRecord) => {
        if (!reads && (rec.method === "GET" || rec.method === "HEAD")) return;
        const put = eventItem(ctx.deps, auditEvent(rec)).Put!;
        // One item: a plain conditional put (the log is append-only), not a transaction.
        await ctx.deps.db.doc.send(new PutCommand(put), { abortSignal: ctx.signal });
      },
    },
  };
}
