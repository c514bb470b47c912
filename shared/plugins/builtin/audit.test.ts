import { describe, expect, it } from "vitest";
import type { PluginContext, RequestRecord } from "../types.ts";
import { audit, auditEvent } from "./audit.ts";

const rec = (o: Partial<RequestRecord> = {}): RequestRecord => ({
  requestId: "req-1",
  method: "POST",
  path: "/v1/vms",
  action: "vm.create",
  subject: "alice",
  project: "p1",
  status: 403,
  outcome: "rejected",
  code: "vetoed",
  at: "2030-01-01T00:00:00.000Z",
  durationMs: 12,
  ...o,
});

describe("auditEvent", () => {
  it("files a request under its project with who, what and how it ended", () => {
    expect(auditEvent(rec())).toEqual({
      subjectPk: "PROJ#p1",
      project: "p1",
      type: "api.request",
      requestId: "req-1",
      actor: "alice",
      data: {
        action: "vm.create",
        method: "POST",
        path: "/v1/vms",
        status: 403,
        outcome: "rejected",
        code: "vetoed",
        startedAt: "2030-01-01T00:00:00.000Z",
        durationMs: 12,
      },
    });
  });

  it("files an admin's request under the project it acted on, keeping the admin's own", () => {
    const e = auditEvent({ ...rec({ subject: "root", project: "p1" }), actorProject: "ops" });
    expect(e).toMatchObject({ subjectPk: "PROJ#p1", project: "p1", actor: "root" });
    expect(e.data).toMatchObject({ actorProject: "ops" });
    // In the caller's own project there is nothing to add.
    expect(auditEvent({ ...rec(), actorProject: "p1" }).data).not.toHaveProperty("actorProject");
  });

  it("files a request without a project under the admins-only pseudo-project", () => {
    const e = auditEvent(
      rec({ subject: undefined, project: undefined, status: 401, code: "unauthenticated" }),
    );
    expect(e).toMatchObject({ subjectPk: "PROJ#-", project: "-", actor: undefined });
    expect(e.data).toMatchObject({ status: 401, code: "unauthenticated" });
  });
});

describe("audit", () => {
  // The write itself is tested against DynamoDB Local (test/events.test.ts). Here the context has no
  // services at all: a hook that tries to write fails, one that skips the request does not.
  const bare = { deps: {}, log: {}, signal: new AbortController().signal } as unknown as PluginContext;

  it("skips reads only when told to", async () => {
    const skipReads = audit({ reads: false }).hooks.request!;
    await expect(skipReads(bare, rec({ method: "GET", status: 200, outcome: "accepted" }))).resolves.toBe(
      undefined,
    );
    await expect(skipReads(bare, rec())).rejects.toThrow();
    await expect(audit().hooks.request!(bare, rec({ method: "GET" }))).rejects.toThrow();
  });
});
