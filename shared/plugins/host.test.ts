/**
 * The plugin host without a database: request hooks (order, adjustments, vetoes, failing closed),
 * config checks, the `request` and `sweep` hooks, resource contributions, which notifications an event
 * raises, and the API's request middleware (through `app.request()`). The hooks here never touch
 * `deps.db` or `deps.queues`, so those point at a closed port: a call that reached them would fail.
 */
import { relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { createApp } from "../../functions/api/app.ts";
import { actionOf } from "../../functions/api/middleware/plugins.ts";
import type { Principal } from "../auth/principal.ts";
import { loadSiteConfig } from "../config/site.ts";
import { ErrorCode, UsherError } from "../errors.ts";
import { createLogger, type Logger } from "../log.ts";
import { QueueClient } from "../queue/sqs.ts";
import { DEFAULT_SERVICE_CONFIG, type Deps } from "../services/context.ts";
import { generateEd25519Jwks, importEd25519 } from "../signing/keys.ts";
import type { TxItem } from "../store/base.ts";
import { createDb } from "../store/client.ts";
import { checkConfig, DEFAULT_NOTIFICATIONS, defineConfig, type UsherConfig } from "./config.ts";
import { contributionVerdict, joinContributions, vmChanges } from "./contributions.ts";
import { Plugins } from "./host.ts";
import { noticeEvents } from "./notices.ts";
import type { ActionRequest, Hooks, Notice, Plugin, RequestRecord } from "./types.ts";

type Line = Record<string, unknown> & { level: string; msg: string };

const closed = "http://127.0.0.1:9";
const signer = await importEd25519((await generateEd25519Jwks("cp")).privateJwk);

/** Deps whose logger keeps its lines; db and queues point at a closed port (never used here). */
function testDeps(config?: UsherConfig): { deps: Deps; lines: Line[] } {
  const lines: Line[] = [];
  const log: Logger = createLogger({}, { level: "debug", sink: (l) => lines.push(JSON.parse(l)) });
  const deps: Deps = {
    db: createDb({
      table: "usher-test",
      region: "us-east-1",
      endpoint: closed,
      credentials: { accessKeyId: "x", secretAccessKey: "x" },
    }),
    queues: new QueueClient({
      region: "us-east-1",
      endpoint: closed,
      opsQueueUrl: `${closed}/q/ops`,
      agentQueueUrlTemplate: `${closed}/q/{site}`,
    }),
    signer,
    agentKey: () => undefined,
    log,
    now: () => new Date(),
    plugins: new Plugins(config),
    config: {
      ...DEFAULT_SERVICE_CONFIG,
      defaultSite: "local",
      opTimeoutSeconds: 60,
      idempotencyTtlSeconds: 60,
    },
  };
  return { deps, lines };
}

const plugin = (name: string, hooks: Hooks, extra: Partial<Plugin> = {}): Plugin => ({
  name,
  runsIn: "control-plane",
  hooks,
  ...extra,
});

const alice: Principal = { subject: "alice", project: "p1", roles: ["user"] };
const startRequest = (over: Partial<ActionRequest> = {}): ActionRequest => ({
  action: "start",
  principal: alice,
  requestId: "req-1",
  project: "p1",
  site: "local",
  spec: { vcpus: 2, memoryMiB: 1024 },
  args: {},
  create: { name: "web-1" },
  ...over,
});

/** Runs `fn`, expecting an UsherError, and returns it. */
async function usherError(fn: () => Promise<unknown>): Promise<UsherError> {
  try {
    await fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsherError);
    return err as UsherError;
  }
  throw new Error("expected an UsherError, got none");
}

describe("request hooks", () => {
  it("run in config order, each seeing the adjustments of those before it", async () => {
    const seen: { name: string; spec: unknown; args: unknown }[] = [];
    const { deps } = testDeps();
    deps.plugins = new Plugins({
      plugins: [
        plugin("sizes", {
          start_request: (_ctx, req) => {
            seen.push({ name: "sizes", spec: req.spec, args: req.args });
            return { spec: { ...req.spec, memoryMiB: req.spec.memoryMiB * 2 } };
          },
        }),
        plugin("unrelated", {
          reboot_request: () => ({ veto: "never asked about a start" }),
        }),
        plugin("pin", {
          start_request: async (_ctx, req) => {
            seen.push({ name: "pin", spec: req.spec, args: req.args });
            return { args: { targetHostId: "h2" } };
          },
        }),
        plugin("image", {
          start_request: (_ctx, req) => {
            seen.push({ name: "image", spec: req.spec, args: req.args });
            return { spec: { ...req.spec, image: "base-2404" }, args: { live: false } };
          },
        }),
        plugin("watcher", {
          start_request: (_ctx, req) => {
            seen.push({ name: "watcher", spec: req.spec, args: req.args });
            return undefined;
          },
        }),
      ],
    });
    const out = await deps.plugins.beforeAction(deps, startRequest({ args: { given: 1 } }));
    expect(seen.map((s) => s.name)).toEqual(["sizes", "pin", "image", "watcher"]);
    expect(seen[0]).toMatchObject({ spec: { vcpus: 2, memoryMiB: 1024 }, args: { given: 1 } });
    expect(seen[1]).toMatchObject({ spec: { vcpus: 2, memoryMiB: 2048 }, args: { given: 1 } });
    expect(seen[2]?.args).toEqual({ given: 1, targetHostId: "h2" });
    expect(seen[3]).toEqual({
      name: "watcher",
      spec: { vcpus: 2, memoryMiB: 2048, image: "base-2404" },
      args: { given: 1, targetHostId: "h2", live: false },
    });
    expect(out.spec).toEqual({ vcpus: 2, memoryMiB: 2048, image: "base-2404" });
    expect(out.args).toEqual({ given: 1, targetHostId: "h2", live: false });
    expect(out.create).toEqual({ name: "web-1" });
  });

  it("a veto stops the request with the plugin's reason and name; later hooks do not run", async () => {
    let later = 0;
    const { deps } = testDeps({
      plugins: [
        plugin("allow", { start_request: () => undefined }),
        plugin("quota", {
          start_request: (_ctx, req) => ({
            veto: `project ${req.project} may not run more than 4 vCPUs`,
            details: { limit: 4 },
          }),
        }),
        plugin("after", {
          start_request: () => {
            later++;
            return undefined;
          },
        }),
      ],
    });
    const err = await usherError(() => deps.plugins.beforeAction(deps, startRequest()));
    expect(err.code).toBe(ErrorCode.vetoed);
    expect(err.message).toBe("project p1 may not run more than 4 vCPUs");
    expect(err.details).toEqual({ plugin: "quota", limit: 4 });
    expect(later).toBe(0);
  });

  it("a hook that throws refuses the request (plugin_failed), naming the plugin", async () => {
    const { deps, lines } = testDeps({
      plugins: [
        plugin("ldap", {
          start_request: async () => {
            throw new Error("directory unreachable");
          },
        }),
      ],
    });
    const err = await usherError(() => deps.plugins.beforeAction(deps, startRequest()));
    expect(err.code).toBe(ErrorCode.pluginFailed);
    expect(err.details).toEqual({ plugin: "ldap" });
    expect(err.message).toContain("directory unreachable");
    expect((err.cause as Error).message).toBe("directory unreachable");
    expect(lines).toContainEqual(
      expect.objectContaining({ level: "error", plugin: "ldap", event: "start_request" }),
    );
  });

  it("a hook that runs past its timeoutMs refuses the request, and its signal is aborted", async () => {
    let signal: AbortSignal | undefined;
    const { deps } = testDeps({
      plugins: [
        plugin(
          "slow",
          {
            // Never answers on its own: only the time limit ends it.
            start_request: (ctx) => {
              signal = ctx.signal;
              return new Promise(() => {});
            },
          },
          { timeoutMs: 30 },
        ),
      ],
    });
    const err = await usherError(() => deps.plugins.beforeAction(deps, startRequest()));
    expect(err.code).toBe(ErrorCode.pluginFailed);
    expect(err.details).toEqual({ plugin: "slow" });
    expect(err.message).toContain("longer than 30 ms");
    expect(signal?.aborted).toBe(true);
  });

  it("a spec adjusted into something invalid refuses the request (plugin_failed), with the issues", async () => {
    const { deps } = testDeps({
      plugins: [
        plugin("broken", {
          start_request: (_ctx, req) => ({ spec: { ...req.spec, vcpus: 0, color: "blue" } as never }),
        }),
      ],
    });
    const err = await usherError(() => deps.plugins.beforeAction(deps, startRequest()));
    expect(err.code).toBe(ErrorCode.pluginFailed);
    expect(err.details?.plugin).toBe("broken");
    const issues = err.details?.issues as string[];
    expect(issues.some((i) => i.startsWith("vcpus"))).toBe(true);
    expect(issues.length).toBeGreaterThanOrEqual(2);
  });

  it("only hooks for the request's action run; with none the request passes unchanged", async () => {
    const calls: string[] = [];
    const { deps } = testDeps({
      plugins: [
        plugin("reboots", {
          reboot_request: () => {
            calls.push("reboot");
            return { veto: "no reboots on Fridays" };
          },
        }),
      ],
    });
    const req = startRequest();
    expect(await deps.plugins.beforeAction(deps, req)).toEqual(req);
    expect(calls).toEqual([]);
    const err = await usherError(() =>
      deps.plugins.beforeAction(deps, startRequest({ action: "reboot", create: undefined })),
    );
    expect(err.code).toBe(ErrorCode.vetoed);
    expect(calls).toEqual(["reboot"]);
  });
});

describe("config checks", () => {
  const hooks = {};
  it("names every problem: bad or duplicate names, bad timeouts, bad notification settings", () => {
    const problems = checkConfig({
      plugins: [
        plugin("audit", hooks),
        plugin("audit", hooks),
        plugin("Bad Name", hooks),
        plugin("has:colon", hooks),
        plugin("zero", hooks, { timeoutMs: 0 }),
        plugin("huge", hooks, { timeoutMs: 60_001 }),
        plugin("nan", hooks, { timeoutMs: Number.NaN }),
        plugin("fine", hooks, { timeoutMs: 60_000 }),
      ],
      notifications: { maxAttempts: 0 },
    });
    expect(problems).toContain("plugin audit is listed twice");
    expect(problems.filter((p) => p.includes("not a short lower-case name"))).toHaveLength(2);
    for (const name of ["zero", "huge", "nan"])
      expect(problems).toContain(`plugin ${name}: timeoutMs must be in (0, 60000]`);
    expect(problems.some((p) => p.includes("fine"))).toBe(false);
    expect(problems.some((p) => p.startsWith("notifications.maxAttempts"))).toBe(true);
    expect(problems).toHaveLength(7);
  });

  it("refuses retry delays that are not positive numbers", () => {
    for (const notifications of [
      { retryDelaySeconds: Number.NaN },
      { retryDelaySeconds: 0 },
      { maxDelaySeconds: -1 },
      { maxAttempts: 2.5 },
    ]) {
      expect(checkConfig({ plugins: [], notifications })).toHaveLength(1);
    }
    expect(
      checkConfig({
        plugins: [],
        notifications: { maxAttempts: 1, retryDelaySeconds: 0.5, maxDelaySeconds: 1 },
      }),
    ).toEqual([]);
  });

  it("defineConfig and the Plugins host refuse a bad config with every problem; good ones pass", () => {
    const bad: UsherConfig = { plugins: [plugin("a", hooks), plugin("a", hooks, { timeoutMs: -5 })] };
    expect(() => defineConfig(bad)).toThrow(/listed twice.*timeoutMs must be/);
    expect(() => new Plugins(bad)).toThrow(/^usher\.config: /);
    const good = { plugins: [plugin("a", hooks)] };
    expect(defineConfig(good)).toBe(good);
    expect(new Plugins().list).toEqual([]);
  });

  it("fills notification settings from the defaults, keeping what the config sets", () => {
    const p = new Plugins({ plugins: [], notifications: { maxAttempts: 3, retryDelaySeconds: undefined } });
    expect(p.notifications).toEqual({ ...DEFAULT_NOTIFICATIONS, maxAttempts: 3 });
  });

  it("lists a notification's subscribers in config order", () => {
    const p = new Plugins({
      plugins: [
        plugin("b", { start: () => {}, state_change: () => {} }),
        plugin("a", { start: () => {} }),
        plugin("c", { shutdown: () => {} }),
      ],
    });
    expect(p.subscribers("start")).toEqual(["b", "a"]);
    expect(p.subscribers("state_change")).toEqual(["b"]);
    expect(p.subscribers("host_down")).toEqual([]);
  });
});

describe("site config loading", () => {
  const bundled: UsherConfig = { plugins: [] };
  it("uses the bundled config without a path, and loads a module's default export by path", async () => {
    expect(await loadSiteConfig(undefined, bundled)).toBe(bundled);
    // A relative path resolves from the working directory, as USHER_CONFIG does.
    const file = resolve(import.meta.dirname, "../../test/support/configs/notify.config.ts");
    const loaded = await loadSiteConfig(relative(process.cwd(), file), bundled);
    expect(loaded).not.toBe(bundled);
    expect(loaded.plugins.map((p) => p.name)).toContain("recorder");
  });

  it("refuses a module whose default export is not a config", async () => {
    await expect(loadSiteConfig(resolve(import.meta.dirname, "notices.ts"), bundled)).rejects.toThrow(
      /default export is not an Usher config/,
    );
  });
});

const record = (over: Partial<RequestRecord> = {}): RequestRecord => ({
  requestId: "req-9",
  method: "GET",
  path: "/v1/vms",
  action: "vm.list",
  status: 200,
  outcome: "accepted",
  at: new Date().toISOString(),
  durationMs: 3,
  ...over,
});

describe("afterRequest and sweep", () => {
  it("afterRequest tries a failing hook three times, logs each failure, never throws, and goes on", async () => {
    const calls: string[] = [];
    let flaky = 0;
    const { deps, lines } = testDeps({
      plugins: [
        plugin("broken", {
          request: () => {
            calls.push("broken");
            throw new Error("audit store down");
          },
        }),
        plugin("flaky", {
          request: () => {
            calls.push("flaky");
            if (flaky++ === 0) throw new Error("once");
          },
        }),
        plugin("audit", { request: (_ctx, rec) => void calls.push(`audit:${rec.requestId}`) }),
      ],
    });
    await expect(deps.plugins.afterRequest(deps, record())).resolves.toBeUndefined();
    expect(calls).toEqual(["broken", "broken", "broken", "flaky", "flaky", "audit:req-9"]);
    const warnings = lines.filter((l) => l.msg === "request plugin failed");
    expect(warnings.map((l) => [l.plugin, l.attempt])).toEqual([
      ["broken", 0],
      ["broken", 1],
      ["broken", 2],
      ["flaky", 0],
    ]);
    expect(warnings.every((l) => l.requestId === "req-9" && l.level === "warn")).toBe(true);
  });

  it("sweep runs every plugin's sweep hook, past ones that throw or time out", async () => {
    const ran: string[] = [];
    const { deps, lines } = testDeps({
      plugins: [
        plugin("throws", {
          sweep: () => {
            ran.push("throws");
            throw new Error("lease table gone");
          },
        }),
        plugin("hangs", { sweep: () => new Promise(() => void ran.push("hangs")) }, { timeoutMs: 20 }),
        plugin("no-sweep", { start: () => {} }),
        plugin("leases", { sweep: async () => void ran.push("leases") }),
      ],
    });
    await deps.plugins.sweep(deps);
    expect(ran).toEqual(["throws", "hangs", "leases"]);
    const errors = lines.filter((l) => l.msg === "plugin sweep failed");
    expect(errors.map((l) => l.plugin)).toEqual(["throws", "hangs"]);
  });
});

describe("notify", () => {
  const notice: Notice = {
    event: "start",
    eventId: "ev-1",
    type: "op.succeeded",
    subject: "VM#vm-1",
    data: { action: "start" },
    at: new Date().toISOString(),
    attempt: 0,
  };

  it("delivers to the named plugin only; a throw or a timeout reaches the caller (the outbox retries)", async () => {
    const got: string[] = [];
    const { deps } = testDeps({
      plugins: [
        plugin("ok", { start: (_ctx, n) => void got.push(`ok:${n.eventId}`) }),
        plugin("bad", {
          start: () => {
            throw new Error("webhook 503");
          },
        }),
        plugin("slow", { start: () => new Promise(() => {}) }, { timeoutMs: 20 }),
      ],
    });
    await deps.plugins.notify(deps, "ok", notice);
    expect(got).toEqual(["ok:ev-1"]);
    await expect(deps.plugins.notify(deps, "bad", notice)).rejects.toThrow("webhook 503");
    await expect(deps.plugins.notify(deps, "slow", notice)).rejects.toMatchObject({
      code: ErrorCode.pluginFailed,
    });
    // A plugin gone from the config, or one that no longer handles the event: nothing to deliver.
    await deps.plugins.notify(deps, "gone", notice);
    await deps.plugins.notify(deps, "ok", { ...notice, event: "shutdown" });
    expect(got).toEqual(["ok:ev-1"]);
  });
});

describe("notices", () => {
  it("maps event-log types to the notifications they raise", () => {
    expect(noticeEvents("op.succeeded", { action: "start" })).toEqual(["start"]);
    expect(noticeEvents("op.failed", { action: "migrate" })).toEqual(["migrate_failure"]);
    expect(
      noticeEvents("op.succeeded", { action: "start", state: { from: "starting", to: "running" } }),
    ).toEqual(["start", "state_change"]);
    expect(
      noticeEvents("op.dispatched", { action: "start", state: { from: "pending", to: "starting" } }),
    ).toEqual(["state_change"]);
    expect(
      noticeEvents("op.succeeded", { action: "pause", state: { from: "paused", to: "paused" } }),
    ).toEqual(["pause"]);
    expect(noticeEvents("host.down", {})).toEqual(["host_down"]);
    expect(noticeEvents("host.registered", undefined)).toEqual(["register"]);
    expect(noticeEvents("lease.expired", {})).toEqual(["lease_expired"]);
    expect(noticeEvents("vm.created", { name: "x" })).toEqual([]);
    expect(noticeEvents("op.succeeded", {})).toEqual([]);
  });
});

describe("resource contributions", () => {
  const put = (pk: string): TxItem => ({ Put: { TableName: "t", Item: { pk, sk: pk } } });

  it("claim and release gather contributions in config order, dropping empty ones; a throw fails the claim", async () => {
    const { deps } = testDeps({
      plugins: [
        plugin("ipam", {
          claim: () => ({ items: [put("ADDR#1")], vmSet: { "vm-1": { network: "n" } } }),
          release: () => ({ items: [put("FREE#1")], vmRemove: { "vm-1": ["network"] } }),
        }),
        plugin("nothing", { claim: () => ({ items: [] }), release: () => undefined }),
        plugin("quota", { claim: async () => ({ items: [put("QUOTA#p1")] }) }),
      ],
    });
    const batch = { op: {} as never, field: "hostId" as const, placements: [] };
    const claimed = await deps.plugins.claim(deps, batch);
    expect(claimed.map((c) => c.items.map((i) => i.Put?.Item?.pk))).toEqual([["ADDR#1"], ["QUOTA#p1"]]);
    const released = await deps.plugins.release(deps, { vms: [] });
    expect(released).toHaveLength(1);
    expect(released[0]?.vmRemove).toEqual({ "vm-1": ["network"] });

    const failing = testDeps({
      plugins: [
        plugin("ipam", {
          claim: () => {
            throw new Error("pool unreadable");
          },
        }),
      ],
    });
    await expect(failing.deps.plugins.claim(failing.deps, batch)).rejects.toThrow("pool unreadable");
  });

  it("joins items after the caller's, merges VM changes, and asks the owner of a failed item", () => {
    const quotaError = new UsherError(ErrorCode.quotaExceeded, "over quota");
    const asked: number[][] = [];
    const contributions = [
      {
        items: [put("ADDR#1"), put("ADDR#2")],
        vmSet: { "vm-1": { network: "a" } },
        vmRemove: { "vm-1": ["old"] },
      },
      {
        items: [put("QUOTA#p1")],
        vmSet: { "vm-1": { quota: 1 } },
        vmRemove: { "vm-1": ["network", "stale"] },
        onConditionFailed: (failed: number[]) => {
          asked.push(failed);
          return quotaError;
        },
      },
    ];
    const joined = joinContributions([put("HOST"), put("CLAIM"), put("VM")], contributions);
    expect(joined.items.map((i) => i.Put?.Item?.pk)).toEqual([
      "HOST",
      "CLAIM",
      "VM",
      "ADDR#1",
      "ADDR#2",
      "QUOTA#p1",
    ]);
    expect(joined.offsets).toEqual([3, 5]);
    // A set wins over a remove of the same attribute.
    expect(vmChanges(contributions, "vm-1")).toEqual({
      set: { network: "a", quota: 1 },
      remove: ["old", "stale"],
    });
    expect(vmChanges(contributions, "vm-2")).toEqual({ set: {}, remove: [] });

    expect(contributionVerdict(joined, contributions, [0])).toBeUndefined();
    expect(contributionVerdict(joined, contributions, [5])).toBe(quotaError);
    expect(asked).toEqual([[0]]);
    // Without an onConditionFailed the contribution is prepared again.
    expect(contributionVerdict(joined, contributions, [4])).toBe("retry");
  });
});

describe("request middleware", () => {
  function appWith(hooks: Hooks["request"][], awaitRequestPlugins: boolean) {
    const { deps } = testDeps({
      plugins: hooks.map((request, i) => plugin(`audit-${i}`, { request })),
    });
    return createApp({
      deps,
      // Never called: these requests carry no token, so authentication refuses them before verifying.
      verifyToken: async () => {
        throw new Error("no token expected");
      },
      awaitRequestPlugins,
    });
  }

  it("tells request hooks about accepted and rejected requests (a 401 too) with their outcome", async () => {
    const seen: RequestRecord[] = [];
    const app = appWith([(_ctx, rec) => void seen.push(rec)], true);
    const health = await app.request("/v1/health", { headers: { "x-request-id": "req-health" } });
    const denied = await app.request("/v1/vms", { headers: { "x-request-id": "req-denied" } });
    const missing = await app.request("/v1/nowhere", { headers: { "x-request-id": "req-missing" } });
    expect([health.status, denied.status, missing.status]).toEqual([200, 401, 404]);
    expect(seen.map((r) => r.requestId)).toEqual(["req-health", "req-denied", "req-missing"]);
    expect(seen[0]).toMatchObject({ method: "GET", path: "/v1/health", status: 200, outcome: "accepted" });
    expect(seen[0]?.code).toBeUndefined();
    expect(seen[1]).toMatchObject({
      action: "vm.list",
      status: 401,
      outcome: "rejected",
      code: ErrorCode.unauthenticated,
    });
    expect(seen[1]?.subject).toBeUndefined();
    expect(seen[2]).toMatchObject({ status: 404, outcome: "rejected", code: ErrorCode.notFound });
  });

  it("does not hold the response for the hooks unless told to", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let done = false;
    const app = appWith(
      [
        async () => {
          await gate;
          done = true;
        },
      ],
      false,
    );
    const res = await app.request("/v1/health");
    expect(res.status).toBe(200);
    expect(done).toBe(false);
    release();
    await expect.poll(() => done).toBe(true);
  });

  it("names requests by route", () => {
    expect(actionOf("POST", "/v1/vms")).toBe("vm.create");
    expect(actionOf("DELETE", "/v1/vms/vm-1")).toBe("vm.delete");
    expect(actionOf("PATCH", "/v1/hosts/h1")).toBe("host.patch");
    expect(actionOf("POST", "/v1/vms/vm-1/actions")).toBe("POST /v1/vms/vm-1/actions");
  });
});
