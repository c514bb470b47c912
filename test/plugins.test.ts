/**
 * Plugins through the whole local stack, with the site config test/support/configs/notify.config.ts
 * loaded by the API and the consumers (USHER_CONFIG). Its `recorder` plugin writes each call to a file
 * named by the environment:
 * - its `request` hook sees every API request, a refused (401) one included;
 * - its `start` notification fails twice on purpose: the VM's operation succeeds regardless, and the
 *   notice arrives on the third try, made by a consumers process started after the first try failed
 *   (the outbox lives in DynamoDB, not in the process that began delivering it).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Operation, Vm } from "../shared/contracts/vm.ts";
import { getItem } from "../shared/store/base.ts";
import { createDb } from "../shared/store/client.ts";
import { readRecorderLog } from "./support/configs/notify.config.ts";
import { startTestStack, type TestStack } from "./support/stack.ts";

let t: TestStack;
let dir: string;
let file: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "usher-plugins-"));
  file = join(dir, "recorder.jsonl");
  t = await startTestStack({
    siteConfig: resolve(import.meta.dirname, "support/configs/notify.config.ts"),
    extraEnv: { USHER_TEST_PLUGIN_LOG: file, USHER_NOTIFY_INTERVAL_MS: "200" },
  });
});
afterAll(async () => {
  await t?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const requests = () => readRecorderLog(file).filter((l) => l.hook === "request");
/** Request ids of the requests the API has logged so far. */
const apiRequestIds = () =>
  t.logs.filter((l) => l.source === "api" && l.msg === "request").map((l) => l.requestId as string);

it("a request hook sees every API request, accepted or refused (401 included)", async () => {
  const userToken = await t.userToken("plug", "pat");
  const anon = await t.api("/v1/vms", { token: null, headers: { "x-request-id": "req-anon" } });
  const made = await t.api("/v1/vms", {
    headers: { "x-request-id": "req-made" },
    json: { name: "audited", vcpus: 1, memoryMiB: 256 },
  });
  const missing = await t.api("/v1/vms/vm-nope", {
    token: userToken,
    headers: { "x-request-id": "req-missing" },
  });
  const health = await t.api("/v1/health", { token: null, headers: { "x-request-id": "req-health" } });
  expect([anon.status, made.status, missing.status, health.status]).toEqual([401, 202, 404, 200]);

  // Every request the API logged so far (the stack's health checks and host registrations too)
  // reaches the hook, which runs after each response.
  await expect
    .poll(apiRequestIds, { timeout: 20_000, interval: 100 })
    .toEqual(expect.arrayContaining(["req-anon", "req-made", "req-missing", "req-health"]));
  const logged = apiRequestIds();
  await expect
    .poll(
      () => {
        const seen = new Set(requests().map((l) => l.requestId));
        return logged.filter((id) => !seen.has(id));
      },
      { timeout: 20_000, interval: 100 },
    )
    .toEqual([]);

  const byId = new Map(requests().map((l) => [l.requestId, l]));
  expect(byId.get("req-anon")).toMatchObject({
    method: "GET",
    path: "/v1/vms",
    action: "vm.list",
    status: 401,
    outcome: "rejected",
    code: "unauthenticated",
    pid: t.pids.api,
  });
  expect(byId.get("req-anon")?.subject).toBeUndefined();
  expect(byId.get("req-made")).toMatchObject({
    method: "POST",
    action: "vm.create",
    status: 202,
    outcome: "accepted",
    subject: "local-admin",
    project: "admin",
  });
  expect(byId.get("req-missing")).toMatchObject({
    action: "vm.get",
    status: 404,
    outcome: "rejected",
    code: "not_found",
    project: "plug",
    subject: "pat",
  });
  expect(byId.get("req-health")).toMatchObject({ path: "/v1/health", status: 200, outcome: "accepted" });
  expect(requests().filter((l) => l.action === "host.register").length).toBeGreaterThanOrEqual(3);
});

it("a failing notification plugin never holds the operation; the notice arrives on a later try, after a restart", async () => {
  const created = await t.api<{ vm: Vm; operation: Operation }>("/v1/vms", {
    headers: { "x-request-id": "req-notified" },
    json: { name: "notified", vcpus: 1, memoryMiB: 256 },
  });
  expect(created.status).toBe(202);
  const opId = created.body.operation.id;
  const starts = () => readRecorderLog(file).filter((l) => l.hook === "start" && l.opId === opId);

  const op = await t.waitForOperation(opId);
  expect(op.status).toBe("succeeded");
  expect((await t.api<Vm>(`/v1/vms/${created.body.vm.id}`)).body.state).toBe("running");
  // Succeeded and reported while the plugin had not accepted the notice (its first accepted try comes
  // after two refusals and 3 + 6 s of retry delay).
  expect(starts().filter((l) => l.ok)).toEqual([]);

  // The first try fails in this consumers process; the rest happen in the one started after it.
  await expect.poll(() => starts().length, { timeout: 30_000, interval: 100 }).toBeGreaterThanOrEqual(1);
  const first = starts()[0]!;
  expect(first).toMatchObject({ ok: false, attempt: 0, pid: t.pids.consumers });
  // Restart only once that try is settled (due again in 3 s), not while the process is still in it.
  const db = createDb({
    table: t.stack.env.USHER_TABLE!,
    region: "us-east-1",
    endpoint: t.stack.env.USHER_DYNAMODB_ENDPOINT,
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
  const eventKey = { pk: first.subject as string, sk: `EV#${first.eventId}` };
  await expect
    .poll(async () => (await getItem<{ notifyAttempts?: number }>(db, eventKey))?.notifyAttempts, {
      timeout: 10_000,
      interval: 50,
    })
    .toBe(1);
  const firstPid = first.pid;
  await t.restart();

  await expect.poll(() => starts().filter((l) => l.ok).length, { timeout: 90_000, interval: 250 }).toBe(1);
  const calls = starts();
  expect(calls.map((l) => l.ok)).toEqual([false, false, true]);
  expect(calls.map((l) => l.attempt)).toEqual([0, 1, 2]);
  expect(new Set(calls.map((l) => l.eventId)).size).toBe(1);
  expect(calls[2]).toMatchObject({
    subject: `VM#${created.body.vm.id}`,
    requestId: "req-notified",
    pid: t.pids.consumers,
  });
  expect(t.pids.consumers).not.toBe(firstPid);
  // Each refusal was logged as a failure to retry, with the request id that started it all.
  const warnings = t.logsFor("req-notified").filter((l) => l.msg === "notification failed; will retry");
  expect(warnings.length).toBe(2);
  expect(warnings.every((l) => l.plugin === "recorder" && l.event === "start")).toBe(true);
  expect(
    (await getItem<{ notify?: unknown; notifyAttempts?: number }>(db, eventKey))?.notify,
  ).toBeUndefined();
}, 180_000);
