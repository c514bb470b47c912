/**
 * End to end on the local stack, with the argument policy and the audit plugin
 * (test/support/configs/audit.config.ts): refused and accepted requests are both audited, and
 * `GET /v1/events` reads a project's log — filtered, paged, and never another project's.
 *
 * On Node the API tells `request` plugins about a request after answering it, so a test polls the
 * log until the audit record is there (bounded; it fails with what it last saw).
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Event, EventList } from "../shared/contracts/events.ts";
import { startTestStack, type TestStack } from "./support/stack.ts";

let t: TestStack;
let alice: string;
let bob: string;

beforeAll(async () => {
  t = await startTestStack({
    siteConfig: fileURLToPath(new URL("./support/configs/audit.config.ts", import.meta.url)),
  });
  [alice, bob] = await Promise.all([t.userToken("proj-a", "alice"), t.userToken("proj-b", "bob")]);
});
afterAll(() => t?.stop());

async function events(query: string, token?: string): Promise<EventList> {
  const res = await t.api<EventList>(`/v1/events?${query}`, { token });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

/** Polls a listing until it has `n` events (the audit write lands just after the response). */
async function eventually(query: string, n: number, token?: string): Promise<Event[]> {
  const deadline = Date.now() + 20_000;
  let last: Event[] = [];
  while (Date.now() < deadline) {
    last = (await events(query, token)).items;
    if (last.length >= n) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`GET /v1/events?${query}: ${last.length} of ${n} events: ${JSON.stringify(last)}`);
}

describe("audit on the local stack", () => {
  let vmId: string;
  let opId: string;

  it("vetoes a user's create over the vCPU limit, and audits it as rejected", async () => {
    const res = await t.api("/v1/vms", { token: alice, json: { name: "greedy", vcpus: 8, memoryMiB: 1024 } });
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({
      code: "vetoed",
      detail: "vcpus 8 is over the limit of 4",
      details: { plugin: "arguments", field: "vcpus" },
    });
    const requestId = res.headers.get("x-request-id")!;
    const [rec] = await eventually(`type=api.request&requestId=${requestId}`, 1, alice);
    expect(rec).toMatchObject({
      project: "proj-a",
      actor: "alice",
      data: { action: "vm.create", status: 403, outcome: "rejected", code: "vetoed" },
    });
    // Vetoed before anything was written: no VM event carries the request id.
    expect((await events(`type=vm.&requestId=${requestId}`, alice)).items).toEqual([]);
  });

  it("audits an accepted create as accepted, with the request id its VM's events carry", async () => {
    const res = await t.api("/v1/vms", {
      token: alice,
      json: { name: "modest", vcpus: 2, memoryMiB: 1024 },
      headers: { "x-request-id": "req-audit-accepted" },
    });
    expect(res.status).toBe(202);
    vmId = res.body.vm.id;
    opId = res.body.operation.id;
    expect((await t.waitForOperation(opId, alice)).status).toBe("succeeded");

    const [rec] = await eventually("type=api.request&requestId=req-audit-accepted", 1, alice);
    expect(rec).toMatchObject({
      actor: "alice",
      data: { action: "vm.create", status: 202, outcome: "accepted" },
    });
    // The request id follows the VM and its operation: the whole story under one id.
    const story = (await events("requestId=req-audit-accepted", alice)).items.map((e) => e.type);
    expect(story).toEqual(expect.arrayContaining(["api.request", "vm.created", "op.succeeded"]));
  });

  it("audits a request without a token under `-`, for admins only", async () => {
    const res = await t.api("/v1/vms", { token: null });
    expect(res.status).toBe(401);
    const requestId = res.headers.get("x-request-id")!;
    const [rec] = await eventually(`project=-&requestId=${requestId}`, 1);
    expect(rec).toMatchObject({
      project: "-",
      actor: null,
      data: { status: 401, outcome: "rejected", code: "unauthenticated" },
    });
    expect((await t.api("/v1/events?project=-", { token: alice })).status).toBe(403);
  });

  it("filters by type prefix, vmId and outcome, and pages newest first", async () => {
    const ops = (await events(`type=op.&opId=${opId}`, alice)).items;
    expect(ops.map((e) => e.type)).toContain("op.succeeded");
    expect(ops.every((e) => e.type.startsWith("op.") && e.opId === opId)).toBe(true);

    const whole = (await events(`vmId=${vmId}&limit=200`, alice)).items;
    expect(whole.length).toBeGreaterThanOrEqual(3);
    const paged: Event[] = [];
    let cursor: string | null = null;
    do {
      const page: EventList = await events(`vmId=${vmId}&limit=1${cursor ? `&cursor=${cursor}` : ""}`, alice);
      expect(page.items.length).toBeLessThanOrEqual(1);
      paged.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor);
    expect(paged.map((e) => e.id)).toEqual(whole.map((e) => e.id));
    expect(whole.map((e) => e.id)).toEqual(
      whole
        .map((e) => e.id)
        .sort()
        .reverse(),
    );
    expect(whole.at(-1)?.type).toBe("vm.created");

    const rejected = (await events("type=api.request&outcome=rejected", alice)).items;
    expect(rejected.length).toBeGreaterThanOrEqual(1);
    expect(rejected.every((e) => e.data.outcome === "rejected")).toBe(true);
  });

  it("shows project B none of project A's events", async () => {
    await t.api("/v1/vms", { token: bob }); // so B has an audit record of its own
    const mine = await eventually("type=api.request", 1, bob);
    expect(mine.every((e) => e.project === "proj-b" && e.actor === "bob")).toBe(true);
    const everything = (await events("limit=200", bob)).items;
    expect(everything.some((e) => e.project !== "proj-b")).toBe(false);
    expect((await events(`vmId=${vmId}`, bob)).items).toEqual([]);
    expect((await events("requestId=req-audit-accepted", bob)).items).toEqual([]);
    expect((await t.api("/v1/events?project=proj-a", { token: bob })).status).toBe(403);
    // The admin can read A's log.
    const asAlice = (await events(`vmId=${vmId}`, alice)).items.map((e) => e.id);
    expect((await events(`project=proj-a&vmId=${vmId}`)).items.map((e) => e.id)).toEqual(asAlice);
  });
});
