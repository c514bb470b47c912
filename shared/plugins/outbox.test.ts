/**
 * The notification outbox against real DynamoDB Local: events written through `eventItem` (as every
 * service writes them) carry their pending notifications into the sparse NOTIFY index, and
 * `deliverNotifications` delivers them in config order, retries failures with a doubling delay (the
 * test moves the services' clock), gives up after `maxAttempts`, and leases each event so that two
 * deliverers never run the same notification at once.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { admin, type ServiceBed, startServiceBed } from "../../test/support/services.ts";
import { createLogger } from "../log.ts";
import type { Deps } from "../services/context.ts";
import { type EventInput, eventItem } from "../services/events.ts";
import { getItem, queryAll, transact, updateOf } from "../store/base.ts";
import type { UsherConfig } from "./config.ts";
import { deliverNotifications } from "./outbox.ts";
import type { Hooks, Notice, Plugin } from "./types.ts";

let bed: ServiceBed;
beforeAll(async () => {
  bed = await startServiceBed();
}, 120_000);
afterAll(() => bed?.stop());

type Line = Record<string, unknown> & { level: string; msg: string };
type StoredEvent = {
  pk: string;
  sk: string;
  id: string;
  notify?: string[];
  notifyAttempts?: number;
  notifyGivenUp?: string[];
  gsi2pk?: string;
  gsi2sk?: string;
};

/** Deps over the bed with this plugin config and a logger that keeps its lines. */
function depsWith(config: UsherConfig): { deps: Deps; lines: Line[] } {
  const lines: Line[] = [];
  const log = createLogger({}, { level: "debug", sink: (l) => lines.push(JSON.parse(l)) });
  return { deps: { ...bed.deps({ config }), log }, lines };
}

const plugin = (name: string, hooks: Hooks): Plugin => ({ name, runsIn: "control-plane", hooks });

let subjects = 0;
/** Commits one event as the services do, and returns its key. */
async function writeEvent(
  deps: Deps,
  e: Partial<EventInput> = {},
): Promise<{ pk: string; sk: string; id: string }> {
  const tx = eventItem(deps, {
    subjectPk: `VM#vm-outbox-${++subjects}`,
    project: admin.project,
    type: "op.succeeded",
    requestId: `req-${subjects}`,
    opId: `op-${subjects}`,
    data: { action: "start" },
    ...e,
  });
  await transact(deps.db, [tx]);
  const item = tx.Put?.Item as { pk: string; sk: string; id: string };
  return { pk: item.pk, sk: item.sk, id: item.id };
}

const stored = async (key: { pk: string; sk: string }) =>
  (await getItem<StoredEvent>(bed.deps().db, { pk: key.pk, sk: key.sk }))!;

/** Everything in the NOTIFY index, due or not. */
const pending = () =>
  queryAll<StoredEvent>(bed.deps().db, {
    IndexName: "gsi2",
    KeyConditionExpression: "gsi2pk = :pk",
    ExpressionAttributeValues: { ":pk": "NOTIFY" },
  });

const dueAt = (ev: StoredEvent) => Date.parse(ev.gsi2sk!.split("#")[0]!);

afterEach(async () => {
  bed.clock.offsetMs = 0;
  // A test that failed halfway must not leave notifications for the next one's deliverer.
  const db = bed.deps().db;
  for (const ev of await pending()) {
    await transact(db, [
      { Update: updateOf(db.table, { pk: ev.pk, sk: ev.sk }, { remove: ["notify", "gsi2pk", "gsi2sk"] }) },
    ]);
  }
});

describe("delivery", () => {
  it("delivers an event to each subscriber in config order, then drops it from the index", async () => {
    const calls: { plugin: string; notice: Notice }[] = [];
    const seen = (name: string) => (_ctx: unknown, notice: Notice) =>
      void calls.push({ plugin: name, notice });
    const { deps } = depsWith({
      plugins: [
        plugin("zulu", { start: seen("zulu"), state_change: seen("zulu") }),
        plugin("idle", { shutdown: seen("idle") }),
        plugin("alpha", { start: seen("alpha") }),
      ],
    });
    const ev = await writeEvent(deps, {
      data: { action: "start", state: { from: "starting", to: "running" } },
    });
    const before = await stored(ev);
    expect(before.notify).toEqual(["zulu:start", "alpha:start", "zulu:state_change"]);
    expect(before.notifyAttempts).toBe(0);
    expect((await pending()).map((p) => p.id)).toEqual([ev.id]);

    const report = await deliverNotifications(deps);
    expect(report).toEqual({ due: 1, delivered: 1, retrying: 0, givenUp: 0 });
    expect(calls.map((c) => `${c.plugin}:${c.notice.event}`)).toEqual([
      "zulu:start",
      "alpha:start",
      "zulu:state_change",
    ]);
    expect(calls[0]?.notice).toMatchObject({
      eventId: ev.id,
      type: "op.succeeded",
      subject: ev.pk,
      project: admin.project,
      attempt: 0,
      data: { action: "start", state: { from: "starting", to: "running" } },
    });
    expect(calls[0]?.notice.opId).toMatch(/^op-/);
    expect(calls[0]?.notice.requestId).toMatch(/^req-/);

    const after = await stored(ev);
    expect(after.notify).toBeUndefined();
    expect(after.gsi2pk).toBeUndefined();
    expect(after.notifyAttempts).toBe(1);
    expect(await pending()).toEqual([]);
    expect(await deliverNotifications(deps)).toMatchObject({ due: 0, delivered: 0 });
    expect(calls).toHaveLength(3);
  });

  it("an event nobody subscribes to never enters the index", async () => {
    const calls: string[] = [];
    const { deps } = depsWith({
      plugins: [plugin("shutdowns", { shutdown: (_ctx, n) => void calls.push(n.eventId) })],
    });
    const unwatched = [
      await writeEvent(deps, { data: { action: "start", state: { from: "starting", to: "running" } } }),
      await writeEvent(deps, { type: "vm.created", data: { name: "x" } }),
      // No plugins at all: not even a subscribed event type is kept.
      await writeEvent(bed.deps(), { data: { action: "shutdown" } }),
    ];
    for (const ev of unwatched) {
      const item = await stored(ev);
      expect(item.id).toBe(ev.id);
      expect(item.notify).toBeUndefined();
      expect(item.notifyAttempts).toBeUndefined();
      expect(item.gsi2pk).toBeUndefined();
    }
    expect(await pending()).toEqual([]);
    expect(await deliverNotifications(deps)).toMatchObject({ due: 0 });

    // The same plugins do get the event they subscribe to.
    const watched = await writeEvent(deps, { data: { action: "shutdown" } });
    expect((await pending()).map((p) => p.id)).toEqual([watched.id]);
    await deliverNotifications(deps);
    expect(calls).toEqual([watched.id]);
  });
});

describe("retries", () => {
  it("retries a failing plugin after the delay, without delivering again to the one that succeeded", async () => {
    const calls: string[] = [];
    let flakyCalls = 0;
    const { deps, lines } = depsWith({
      plugins: [
        plugin("flaky", {
          start: (_ctx, n) => {
            calls.push(`flaky@${n.attempt}`);
            if (flakyCalls++ === 0) throw new Error("webhook answered 503");
          },
        }),
        plugin("steady", { start: (_ctx, n) => void calls.push(`steady@${n.attempt}`) }),
      ],
      notifications: { retryDelaySeconds: 10 },
    });
    const ev = await writeEvent(deps);

    const t0 = deps.now().getTime();
    expect(await deliverNotifications(deps)).toMatchObject({ due: 1, retrying: 1, delivered: 0 });
    const t1 = deps.now().getTime();
    expect(calls).toEqual(["flaky@0", "steady@0"]);
    const waiting = await stored(ev);
    expect(waiting.notify).toEqual(["flaky:start"]);
    expect(waiting.notifyAttempts).toBe(1);
    expect(dueAt(waiting)).toBeGreaterThanOrEqual(t0 + 10_000);
    expect(dueAt(waiting)).toBeLessThanOrEqual(t1 + 10_000);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: "warn",
        msg: "notification failed; will retry",
        plugin: "flaky",
        eventId: ev.id,
      }),
    );

    // Not due yet: nothing happens.
    expect(await deliverNotifications(deps)).toMatchObject({ due: 0 });
    expect(calls).toHaveLength(2);

    bed.clock.offsetMs = 11_000;
    expect(await deliverNotifications(deps)).toMatchObject({ due: 1, delivered: 1 });
    expect(calls).toEqual(["flaky@0", "steady@0", "flaky@1"]);
    const done = await stored(ev);
    expect(done.notify).toBeUndefined();
    expect(done.gsi2pk).toBeUndefined();
    expect(done.notifyAttempts).toBe(2);
    expect(await pending()).toEqual([]);
  });

  it("gives up after maxAttempts with doubling delays (capped), logs it and records what was lost", async () => {
    const attempts: number[] = [];
    let upCalls = 0;
    const { deps, lines } = depsWith({
      plugins: [
        plugin("down", {
          start: (_ctx, n) => {
            attempts.push(n.attempt);
            throw new Error("unreachable");
          },
        }),
        plugin("up", { start: () => void upCalls++ }),
      ],
      notifications: { maxAttempts: 4, retryDelaySeconds: 4, maxDelaySeconds: 10 },
    });
    const ev = await writeEvent(deps);

    // 4 s, then 8 s, then 16 s capped to 10 s.
    for (const delaySeconds of [4, 8, 10]) {
      const before = deps.now().getTime();
      expect(await deliverNotifications(deps)).toMatchObject({ due: 1, retrying: 1 });
      const after = deps.now().getTime();
      const item = await stored(ev);
      expect(item.notify).toEqual(["down:start"]);
      expect(dueAt(item)).toBeGreaterThanOrEqual(before + delaySeconds * 1000);
      expect(dueAt(item)).toBeLessThanOrEqual(after + delaySeconds * 1000);
      bed.clock.offsetMs += delaySeconds * 1000 + 1000;
    }
    expect(await deliverNotifications(deps)).toMatchObject({ due: 1, givenUp: 1, retrying: 0 });
    expect(attempts).toEqual([0, 1, 2, 3]);
    expect(upCalls).toBe(1);

    const given = await stored(ev);
    expect(given.notifyGivenUp).toEqual(["down:start"]);
    expect(given.notifyAttempts).toBe(4);
    expect(given.notify).toBeUndefined();
    expect(given.gsi2pk).toBeUndefined();
    expect(await pending()).toEqual([]);
    expect(lines.filter((l) => l.level === "error")).toEqual([
      expect.objectContaining({
        msg: "notification given up after repeated failures",
        eventId: ev.id,
        pending: ["down:start"],
        attempts: 4,
      }),
    ]);

    bed.clock.offsetMs += 3_600_000;
    expect(await deliverNotifications(deps)).toMatchObject({ due: 0 });
    expect(attempts).toHaveLength(4);
  });
});

describe("leases", () => {
  it("a deliverer that read an event another has already taken leaves it alone", async () => {
    const calls: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let firstCalled!: () => void;
    const first = new Promise<void>((r) => {
      firstCalled = r;
    });
    const config: UsherConfig = {
      plugins: [
        plugin("hook", {
          start: async (_ctx, n) => {
            calls.push(n.eventId);
            if (calls.length === 1) {
              firstCalled();
              await gate;
            }
          },
        }),
      ],
    };
    const a = depsWith(config).deps;
    const b = depsWith(config).deps;
    const events = [];
    for (let i = 0; i < 5; i++) events.push(await writeEvent(a));

    // A reads all five, leases the first and is held inside its hook; B then runs to completion.
    const runA = deliverNotifications(a);
    await first;
    const reportB = await deliverNotifications(b);
    release();
    const reportA = await runA;

    expect(reportA).toEqual({ due: 5, delivered: 1, retrying: 0, givenUp: 0 });
    expect(reportB).toEqual({ due: 4, delivered: 4, retrying: 0, givenUp: 0 });
    expect([...calls].sort()).toEqual(events.map((e) => e.id).sort());
    expect(await pending()).toEqual([]);
  });

  it("two deliverers running at once deliver each notification once", async () => {
    const calls: string[] = [];
    const config: UsherConfig = {
      plugins: [
        plugin("hook", {
          start: async (_ctx, n) => {
            calls.push(n.eventId);
            await new Promise((r) => setTimeout(r, 5));
          },
        }),
      ],
    };
    const a = depsWith(config).deps;
    const b = depsWith(config).deps;
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push((await writeEvent(a)).id);

    const [ra, rb] = await Promise.all([deliverNotifications(a), deliverNotifications(b)]);
    expect(ra.delivered + rb.delivered).toBe(12);
    expect([...calls].sort()).toEqual([...ids].sort());
    expect(await pending()).toEqual([]);
  });

  it("a lease that ran out lets another deliverer take over; the late one does not settle", async () => {
    const calls: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let firstCalled!: () => void;
    const first = new Promise<void>((r) => {
      firstCalled = r;
    });
    const config: UsherConfig = {
      plugins: [
        plugin("hook", {
          start: async (_ctx, n) => {
            calls.push(n.eventId);
            if (calls.length === 1) {
              firstCalled();
              await gate;
            }
          },
        }),
      ],
    };
    const stuck = depsWith(config);
    const other = depsWith(config).deps;
    const ev = await writeEvent(stuck.deps);

    const runStuck = deliverNotifications(stuck.deps);
    await first;
    // Within the lease nobody else takes the event.
    expect(await deliverNotifications(other)).toMatchObject({ due: 0 });
    bed.clock.offsetMs = 61_000;
    expect(await deliverNotifications(other)).toMatchObject({ due: 1, delivered: 1 });
    release();
    await runStuck;

    // At least once: both delivered it; the event is settled once, by the one that held the lease.
    expect(calls).toEqual([ev.id, ev.id]);
    expect((await stored(ev)).notifyAttempts).toBe(1);
    expect(await pending()).toEqual([]);
    expect(stuck.lines).toContainEqual(
      expect.objectContaining({ msg: "notification lease ran out before it settled", eventId: ev.id }),
    );
  });
});
