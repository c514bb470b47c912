/**
 * The example `webhook()` plugin through the whole local stack (site config
 * test/support/configs/webhook.config.ts): a VM's start reaches a real HTTP receiver, run here on
 * loopback, as signed POSTs (`start` and `state_change`, nothing it did not subscribe to), and a
 * notice the receiver refuses is delivered again, with a higher `attempt`, once it accepts — long
 * after the operation itself succeeded.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Operation, Vm } from "../shared/contracts/vm.ts";
import type { Notice } from "../shared/plugins/types.ts";
import { startTestStack, type TestStack } from "./support/stack.ts";

/** One POST the receiver got, and what it answered. */
type Delivery = {
  method: string | undefined;
  path: string | undefined;
  headers: IncomingHttpHeaders;
  raw: Buffer;
  notice: Notice;
  status: number;
  receivedAt: number;
};

const SECRET = randomBytes(16).toString("hex");
const deliveries: Delivery[] = [];
/** Notification types the receiver answers 500 (as a receiver that is down would). */
const refusing = new Set<string>();

let receiver: Server;
let t: TestStack;

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      const event = String(req.headers["x-usher-event"]);
      const status = refusing.has(event) ? 500 : 204;
      deliveries.push({
        method: req.method,
        path: req.url,
        headers: req.headers,
        raw,
        notice: JSON.parse(raw.toString("utf8")) as Notice,
        status,
        receivedAt: Date.now(),
      });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const { port } = receiver.address() as AddressInfo;
  t = await startTestStack({
    siteConfig: resolve(import.meta.dirname, "support/configs/webhook.config.ts"),
    extraEnv: {
      USHER_TEST_WEBHOOK_URL: `http://127.0.0.1:${port}/hook`,
      USHER_TEST_WEBHOOK_SECRET: SECRET,
      USHER_NOTIFY_INTERVAL_MS: "200",
    },
  });
});
afterAll(async () => {
  await t?.stop();
  if (receiver) await new Promise<void>((r) => receiver.close(() => r()));
});

/** The receiver's check, as webhook.ts documents it: `sha256=<hex HMAC-SHA256 of the raw body>`. */
function signatureVerifies(d: Delivery): boolean {
  const expected = Buffer.from(`sha256=${createHmac("sha256", SECRET).update(d.raw).digest("hex")}`);
  const got = Buffer.from(String(d.headers["x-usher-signature"] ?? ""));
  return got.length === expected.length && timingSafeEqual(got, expected);
}

const about = (vmId: string, event: string) =>
  deliveries.filter((d) => d.notice.subject === `VM#${vmId}` && d.notice.event === event);

async function createVm(name: string): Promise<{ vm: Vm; op: Operation }> {
  const created = await t.api<{ vm: Vm; operation: Operation }>("/v1/vms", {
    json: { name, vcpus: 1, memoryMiB: 256 },
  });
  expect(created.status).toBe(202);
  return { vm: created.body.vm, op: created.body.operation };
}

it("a VM's start reaches the receiver as signed POSTs of `start` and `state_change`", async () => {
  const { vm, op } = await createVm("hooked");
  expect((await t.waitForOperation(op.id)).status).toBe("succeeded");

  await expect.poll(() => about(vm.id, "start").length, { timeout: 20_000, interval: 100 }).toBe(1);
  const start = about(vm.id, "start")[0]!;
  expect(start).toMatchObject({ method: "POST", path: "/hook", status: 204 });
  expect(start.headers["content-type"]).toBe("application/json");
  expect(signatureVerifies(start)).toBe(true);
  expect(start.notice).toMatchObject({
    event: "start",
    type: "op.succeeded",
    subject: `VM#${vm.id}`,
    opId: op.id,
    project: "admin",
    attempt: 0,
  });
  expect(start.headers["x-usher-event"]).toBe("start");
  expect(start.headers["x-usher-delivery"]).toBe(`${start.notice.eventId}:start`);

  // The same logged event (the start's success, which also moved the VM's state) raises both.
  await expect
    .poll(() => about(vm.id, "state_change").filter((d) => d.notice.eventId === start.notice.eventId), {
      timeout: 20_000,
      interval: 100,
    })
    .toHaveLength(1);
  const change = about(vm.id, "state_change").find((d) => d.notice.eventId === start.notice.eventId)!;
  expect(signatureVerifies(change)).toBe(true);
  expect(change.notice).toMatchObject({ subject: `VM#${vm.id}`, opId: op.id, attempt: 0 });
  expect((change.notice.data.state as { to?: unknown }).to).toBe("running");
  // Distinct delivery ids, so a receiver that de-duplicates on them keeps both.
  expect(change.headers["x-usher-delivery"]).toBe(`${start.notice.eventId}:state_change`);

  // A body changed by one byte no longer verifies (the check is not vacuous).
  expect(signatureVerifies({ ...start, raw: Buffer.from(`${start.raw.toString()} `) })).toBe(false);
  // Only what the config subscribed to: the hosts' `register` notices, say, were never sent.
  expect(new Set(deliveries.map((d) => d.notice.event))).toEqual(new Set(["start", "state_change"]));
}, 60_000);

it("a refused notice is retried with a higher attempt once the receiver accepts; the operation never waited", async () => {
  refusing.add("state_change");
  const { vm, op } = await createVm("refused");
  const done = await t.waitForOperation(op.id);
  expect(done.status).toBe("succeeded");
  const finishedAt = Date.parse(done.finishedAt!);

  await expect.poll(() => about(vm.id, "start").length, { timeout: 20_000, interval: 50 }).toBe(1);
  const eventId = about(vm.id, "start")[0]!.notice.eventId;
  const changes = () => about(vm.id, "state_change").filter((d) => d.notice.eventId === eventId);
  await expect.poll(() => changes().length, { timeout: 20_000, interval: 50 }).toBeGreaterThanOrEqual(1);
  refusing.delete("state_change");

  await expect
    .poll(() => changes().filter((d) => d.status === 204).length, { timeout: 30_000, interval: 100 })
    .toBe(1);
  const tries = changes();
  const accepted = tries.at(-1)!;
  const refused = tries.slice(0, -1);
  expect(refused.length).toBeGreaterThanOrEqual(1);
  expect(refused.every((d) => d.status === 500)).toBe(true);
  // Each try counts up from 0; the accepted one is a later attempt of the same event, signed anew.
  expect(tries.map((d) => d.notice.attempt)).toEqual(tries.map((_, i) => i));
  expect(accepted.notice.attempt).toBeGreaterThan(refused[0]!.notice.attempt);
  expect(tries.every(signatureVerifies)).toBe(true);
  expect(accepted.notice).toMatchObject({ ...refused[0]!.notice, attempt: accepted.notice.attempt });
  expect(new Set(tries.map((d) => d.headers["x-usher-delivery"])).size).toBe(1);

  // The operation had succeeded before the notice was even tried, let alone retried.
  expect(finishedAt).toBeLessThanOrEqual(refused[0]!.receivedAt);
  expect(finishedAt).toBeLessThan(accepted.receivedAt);
  // Only the refused notification was tried again: `start` went once.
  expect(about(vm.id, "start")).toHaveLength(1);
  // The consumers logged the refusal as one to retry.
  const warned = t.logs.filter(
    (l) => l.msg === "notification failed; will retry" && l.eventId === eventId && l.plugin === "webhook",
  );
  expect(warned.length).toBe(refused.length);
  expect(warned.every((l) => l.event === "state_change")).toBe(true);
}, 90_000);
