/**
 * The API on Cloudflare Workers: functions/api/worker.ts served by workerd through `wrangler dev
 * --local`, against the local stack's DynamoDB Local and fauxqs, with the stack's consumers and agent
 * doing the work. Every request below goes to the Worker's URL, not to the Node API.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TERMINAL_OP_STATUSES } from "../shared/contracts/common.ts";
import type { Operation, Vm } from "../shared/contracts/vm.ts";
import { startTestStack, type TestStack } from "./support/stack.ts";
import { isRunningWorkerd, startWranglerDev, type WranglerDev } from "./support/wrangler.ts";

let t: TestStack;
let w: WranglerDev;
let user: string;
let workerd: number[] = [];

beforeAll(async () => {
  t = await startTestStack();
  user = await t.userToken("alpha", "alice");
  // The Node API's environment; the stack hands AWS credentials to its children apart from it.
  w = await startWranglerDev({
    env: { ...t.stack.env, AWS_ACCESS_KEY_ID: "local", AWS_SECRET_ACCESS_KEY: "local" },
  });
  workerd = w.workerdPids();
}, 180_000);
afterAll(async () => {
  await w?.stop();
  await t?.stop();
}, 60_000);

/** A request to the Worker; the body parsed when it is JSON. */
async function worker<T = unknown>(
  path: string,
  init: { method?: string; token?: string | null; json?: unknown; requestId?: string } = {},
): Promise<{ status: number; body: T; headers: Headers }> {
  const headers = new Headers();
  if (init.token) headers.set("authorization", `Bearer ${init.token}`);
  if (init.requestId) headers.set("x-request-id", init.requestId);
  if (init.json !== undefined) headers.set("content-type", "application/json");
  const res = await fetch(`${w.url}${path}`, {
    method: init.method ?? (init.json === undefined ? "GET" : "POST"),
    headers,
    body: init.json === undefined ? undefined : JSON.stringify(init.json),
  });
  const text = await res.text();
  const isJson = /[/+]json\b/.test(res.headers.get("content-type") ?? "");
  return { status: res.status, body: (isJson && text ? JSON.parse(text) : text) as T, headers: res.headers };
}

describe("the API on workerd (wrangler dev)", () => {
  it("is served by workerd", async () => {
    expect(workerd.length).toBeGreaterThan(0);
    const res = await worker<{ status: string }>("/v1/health");
    expect(res.status).toBe(200);
    expect(res.body.status).toBe("ok");
  });

  it("creates a VM that reaches running, with the stack's consumers and agent doing the work", async () => {
    const requestId = `worker-test-${Date.now()}`;
    const created = await worker<{ vm: Vm; operation: Operation }>("/v1/vms", {
      token: user,
      requestId,
      json: { name: "edge-1", vcpus: 1, memoryMiB: 512 },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    const { vm, operation } = created.body;
    expect(vm).toMatchObject({ name: "edge-1", state: "pending", project: "alpha" });
    expect(operation).toMatchObject({ vmId: vm.id, action: "start", status: "queued" });
    // The Worker logged the request (console → wrangler's output); the Node API never saw it.
    expect(w.logs.some((l) => l.includes(requestId))).toBe(true);
    expect(t.logsFor(requestId).filter((l) => l.source === "api")).toEqual([]);

    // Long-polls on the Worker until the operation is terminal.
    let op = operation;
    const deadline = Date.now() + 90_000;
    while (!TERMINAL_OP_STATUSES.includes(op.status)) {
      if (Date.now() > deadline) throw new Error(`operation still ${op.status} after 90 s`);
      const res = await worker<Operation>(`/v1/operations/${operation.id}?waitSeconds=20`, { token: user });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      op = res.body;
    }
    expect(op.status, JSON.stringify(op.error)).toBe("succeeded");

    const now = await worker<Vm>(`/v1/vms/${vm.id}`, { token: user });
    expect(now.status).toBe(200);
    expect(now.body.state).toBe("running");
    expect(now.body.hostId).toMatch(/^host-/);
    // One state store: the Node API reads the same VM.
    expect((await t.api<Vm>(`/v1/vms/${vm.id}`, { token: user })).body).toMatchObject({
      state: "running",
      hostId: now.body.hostId,
    });
  });

  it("refuses an unauthenticated request with 401 problem+json", async () => {
    const res = await worker<{ status: number; code: string }>("/v1/vms", { token: null });
    expect(res.status).toBe(401);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(res.body.status).toBe(401);
  });

  it("serves the OpenAPI document", async () => {
    const res = await worker<{ openapi: string; paths: Record<string, unknown> }>("/v1/openapi.json");
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe("3.1.0");
    expect(Object.keys(res.body.paths)).toContain("/v1/vms");
  });

  it("leaves no workerd process behind when stopped", async () => {
    await w.stop();
    expect(w.workerdPids()).toEqual([]);
    expect(workerd.filter(isRunningWorkerd)).toEqual([]);
  });
});
