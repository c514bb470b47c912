/**
 * Leases (issue 4). Services against real DynamoDB Local and fauxqs with a clock the test moves: the
 * warning is written once, the expiry action submitted once (even with sweeps racing), renewal moves
 * the expiry and re-arms the warning, and a lease leaves with its VM. Then end to end on the local
 * stack: a short lease ends in `lease.expiring`, `lease.expired` and the VM destroyed, the notices
 * reach a plugin, and a renewed lease outlives its first expiry.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Principal } from "../shared/auth/principal.ts";
import type { Operation, Vm } from "../shared/contracts/vm.ts";
import { ErrorCode } from "../shared/errors.ts";
import { leases } from "../shared/plugins/builtin/leases.ts";
import type { UsherConfig } from "../shared/plugins/config.ts";
import type { Deps } from "../shared/services/context.ts";
import { finishOperation } from "../shared/services/finish.ts";
import { createHost } from "../shared/services/hosts.ts";
import { type LeaseItem, leaseKeys, leasePut, renewLease } from "../shared/services/leases.ts";
import { getOpItem } from "../shared/services/operations.ts";
import { scheduleOperation } from "../shared/services/scheduling.ts";
import { sweep } from "../shared/services/sweep.ts";
import { createVm, getVmItem, requestAction } from "../shared/services/vms.ts";
import { getItem, queryAll, transact } from "../shared/store/base.ts";
import type { OpItem } from "../shared/store/items.ts";
import { keys } from "../shared/store/keys.ts";
import { readLeaseNotices } from "./support/configs/leases.config.ts";
import { type ServiceBed, startServiceBed } from "./support/services.ts";
import { startTestStack, type TestStack } from "./support/stack.ts";

const alice: Principal = { subject: "alice", project: "team", roles: ["user"] };
const carol: Principal = { subject: "carol", project: "doomed", roles: ["user"] };
const eve: Principal = { subject: "eve", project: "other", roles: ["user"] };

describe("leases: services", () => {
  let bed: ServiceBed;
  const config: UsherConfig = {
    plugins: [
      leases({
        maxSeconds: 3600,
        warnBeforeSeconds: 60,
        onExpiry: "shutdown",
        projects: { doomed: { defaultSeconds: 900, onExpiry: "destroy" } },
      }),
    ],
  };
  const deps = (): Deps => bed.deps({ config });
  let n = 0;
  const ctx = (principal: Principal) => ({ principal, requestId: `req-lease-${++n}` });

  beforeAll(async () => {
    bed = await startServiceBed();
    await createHost(
      bed.deps(),
      { actor: "root", requestId: "req-setup" },
      { id: "h1", site: "local", kind: "sim", address: "h1.sim", capacity: { vcpus: 32, memoryMiB: 65536 } },
    );
  });
  afterAll(() => bed?.stop());
  afterEach(() => {
    bed.clock.offsetMs = 0;
  });

  /** Schedules the operation (placing it, with the claim hooks) and records the agent's success. */
  async function runOp(opId: string): Promise<OpItem> {
    await scheduleOperation(deps(), { opId, requestId: "flow" });
    const op = (await getOpItem(deps(), opId))!;
    expect(op.status).toBe("dispatched");
    const power = op.action === "shutdown" ? "stopped" : op.action === "start" ? "running" : "absent";
    await finishOperation(
      deps(),
      op,
      await getVmItem(deps(), op.vmId),
      { ok: true, powerState: power },
      {
        dispatched: true,
      },
    );
    return (await getOpItem(deps(), opId))!;
  }

  /** A VM created (with `leaseSeconds` when given) and started. */
  async function runningVm(name: string, principal: Principal, leaseSeconds?: number) {
    const res = await createVm(deps(), ctx(principal), {
      name,
      vcpus: 1,
      memoryMiB: 256,
      ...(leaseSeconds === undefined ? {} : { leaseSeconds }),
    });
    const { vm, operation } = res.body as { vm: Vm; operation: Operation };
    expect((await runOp(operation.id)).status).toBe("succeeded");
    return { vm: (await getVmItem(deps(), vm.id))!, startOp: operation };
  }

  const leaseOf = (vmId: string) => getItem<LeaseItem>(deps().db, leaseKeys.lease(vmId));
  const eventsOf = async (vmId: string, type: string) =>
    (
      await queryAll<{ eventType: string; data: Record<string, unknown> }>(deps().db, {
        KeyConditionExpression: "pk = :pk AND begins_with(sk, :ev)",
        ExpressionAttributeValues: { ":pk": keys.vm(vmId).pk, ":ev": "EV#" },
      })
    ).filter((e) => e.eventType === type);
  const opsOf = (vmId: string) =>
    queryAll<OpItem>(deps().db, {
      IndexName: "gsi1",
      KeyConditionExpression: "gsi1pk = :pk",
      ExpressionAttributeValues: { ":pk": keys.opVmIndex(vmId, 0).gsi1pk },
    });
  /** Moves the clock to `seconds` after `from` and runs `times` sweeps at once. */
  async function sweepAt(from: string, seconds: number, times = 1) {
    bed.clock.offsetMs = Date.parse(from) + seconds * 1000 - Date.now();
    await Promise.all(Array.from({ length: times }, () => sweep(deps())));
  }

  it("vetoes a lease beyond maxSeconds; an accepted one is a start argument, never part of the spec", async () => {
    await expect(
      createVm(deps(), ctx(alice), { name: "too-long", vcpus: 1, memoryMiB: 256, leaseSeconds: 3601 }),
    ).rejects.toMatchObject({ code: ErrorCode.vetoed, details: { maxSeconds: 3600 } });

    const res = await createVm(deps(), ctx(alice), {
      name: "asks",
      vcpus: 1,
      memoryMiB: 256,
      leaseSeconds: 600,
    });
    const { vm, operation } = res.body as { vm: Vm; operation: Operation };
    expect(operation.args).toEqual({ leaseSeconds: 600 });
    expect(vm.spec).toEqual({ vcpus: 1, memoryMiB: 256 });
    // The lease starts with the placement, not before.
    expect(vm.leaseExpiresAt).toBeNull();
    expect(await leaseOf(vm.id)).toBeUndefined();
  });

  it("placement starts the lease; racing sweeps warn once and submit the expiry action once", async () => {
    const { vm } = await runningVm("expires", alice, 600);
    const lease = (await leaseOf(vm.id))!;
    expect(lease).toMatchObject({ project: "team", gsi2pk: "LEASES" });
    expect(vm.leaseExpiresAt).toBe(lease.leaseExpiresAt);
    const placedAt = new Date(Date.parse(lease.leaseExpiresAt) - 600_000).toISOString();

    await sweepAt(placedAt, 500);
    expect(await eventsOf(vm.id, "lease.expiring")).toHaveLength(0);

    await sweepAt(placedAt, 545, 3);
    await sweepAt(placedAt, 550);
    const warned = await eventsOf(vm.id, "lease.expiring");
    expect(warned).toHaveLength(1);
    expect(warned[0]?.data).toMatchObject({
      vmId: vm.id,
      expiresAt: lease.leaseExpiresAt,
      onExpiry: "shutdown",
    });

    await sweepAt(placedAt, 601, 4);
    await sweepAt(placedAt, 605);
    expect(await eventsOf(vm.id, "lease.expired")).toHaveLength(1);
    const shutdowns = (await opsOf(vm.id)).filter((o) => o.action === "shutdown");
    expect(shutdowns).toHaveLength(1);
    expect(shutdowns[0]).toMatchObject({ requester: "usher:leases", project: "team" });
    const done = (await leaseOf(vm.id))!;
    expect(done).toMatchObject({ actionOpId: shutdowns[0]!.id, expiredAt: expect.any(String) });
    expect(done.gsi2pk).toBeUndefined(); // out of the sweep's index
  });

  it("a VM shut down by its lease starts again only once the lease is renewed", async () => {
    const { vm } = await runningVm("stopped-by-lease", alice, 120);
    await sweepAt(vm.leaseExpiresAt!, 1);
    const shutdown = (await opsOf(vm.id)).find((o) => o.action === "shutdown")!;
    expect((await runOp(shutdown.id)).status).toBe("succeeded");
    expect((await getVmItem(deps(), vm.id))?.state).toBe("stopped");

    await expect(requestAction(deps(), ctx(alice), vm.id, { action: "start" })).rejects.toMatchObject({
      code: ErrorCode.vetoed,
    });
    const renewed = await renewLease(deps(), ctx(alice), vm.id, { extendSeconds: 300 });
    expect(renewed.body).toMatchObject({ expiredAt: null, expiryOperationId: null, warnedAt: null });
    const start = await requestAction(deps(), ctx(alice), vm.id, { action: "start" });
    expect(start.status).toBe(202);
  });

  it("renewal moves the expiry and re-arms the warning; it keeps to maxSeconds and the owner's project", async () => {
    const { vm } = await runningVm("renewed", alice, 600);
    const first = vm.leaseExpiresAt!;
    await sweepAt(first, -55);
    expect(await eventsOf(vm.id, "lease.expiring")).toHaveLength(1);

    const res = await renewLease(deps(), ctx(alice), vm.id, { extendSeconds: 600 });
    const second = new Date(Date.parse(first) + 600_000).toISOString();
    expect(res).toMatchObject({ status: 200, body: { vmId: vm.id, expiresAt: second, warnedAt: null } });
    expect((await getVmItem(deps(), vm.id))?.leaseExpiresAt).toBe(second);
    expect(await leaseOf(vm.id)).toMatchObject({ gsi2sk: `${second}#${vm.id}` });

    // Past the first expiry: nothing happens.
    await sweepAt(first, 5);
    expect(await eventsOf(vm.id, "lease.expired")).toHaveLength(0);
    expect((await opsOf(vm.id)).map((o) => o.action)).toEqual(["start"]);
    // Within the warning time of the new expiry: warned again.
    await sweepAt(second, -30);
    expect(await eventsOf(vm.id, "lease.expiring")).toHaveLength(2);

    await expect(renewLease(deps(), ctx(alice), vm.id, { extendSeconds: 3600 })).rejects.toMatchObject({
      code: ErrorCode.validation,
      details: { maxSeconds: 3600 },
    });
    await expect(
      renewLease(deps(), ctx(alice), vm.id, { expiresAt: new Date(Date.now() - 1000).toISOString() }),
    ).rejects.toMatchObject({ code: ErrorCode.validation });
    await expect(renewLease(deps(), ctx(eve), vm.id, { extendSeconds: 60 })).rejects.toMatchObject({
      code: ErrorCode.notFound,
    });
  });

  it("a VM without a lease has none to renew (409)", async () => {
    const { vm } = await runningVm("unleased", alice);
    expect(vm.leaseExpiresAt).toBeUndefined();
    await expect(renewLease(deps(), ctx(alice), vm.id, { extendSeconds: 60 })).rejects.toMatchObject({
      code: ErrorCode.invalidState,
    });
  });

  it("a project's default lease is destroyed at expiry per its policy, and the release removes the lease", async () => {
    const { vm } = await runningVm("doomed", carol);
    const lease = (await leaseOf(vm.id))!;
    expect(Date.parse(lease.leaseExpiresAt) - Date.parse(vm.createdAt)).toBeGreaterThanOrEqual(900_000);

    await sweepAt(lease.leaseExpiresAt, 1, 2);
    const destroys = (await opsOf(vm.id)).filter((o) => o.action === "destroy");
    expect(destroys).toHaveLength(1);
    expect(destroys[0]?.requester).toBe("usher:leases");
    expect((await runOp(destroys[0]!.id)).status).toBe("succeeded");
    expect(await leaseOf(vm.id)).toBeUndefined();
    const after = await getVmItem(deps(), vm.id);
    expect(after).toMatchObject({ state: "destroyed" });
    expect(after?.leaseExpiresAt).toBeUndefined();
  });

  it("a start that fails after placement keeps the lease; the VM placed again keeps its expiry", async () => {
    const res = await createVm(deps(), ctx(alice), {
      name: "retried",
      vcpus: 1,
      memoryMiB: 256,
      leaseSeconds: 600,
    });
    const { vm, operation } = res.body as { vm: Vm; operation: Operation };
    await scheduleOperation(deps(), { opId: operation.id, requestId: "flow" });
    const first = (await leaseOf(vm.id))!.leaseExpiresAt;
    const failed = { code: "driver_failed", message: "no such image" };
    await finishOperation(
      deps(),
      (await getOpItem(deps(), operation.id))!,
      await getVmItem(deps(), vm.id),
      { ok: false, error: failed, powerState: "absent" },
      { dispatched: true },
    );
    const released = (await getVmItem(deps(), vm.id))!;
    expect(released.hostId).toBeUndefined(); // the claim went...
    expect(released.leaseExpiresAt).toBe(first); // ...the lease did not

    bed.clock.offsetMs = 30_000; // a lease made now would end 30 s after the first
    const again = await requestAction(deps(), ctx(alice), vm.id, { action: "start" });
    expect((await runOp((again.body as { operation: Operation }).operation.id)).status).toBe("succeeded");
    expect((await leaseOf(vm.id))?.leaseExpiresAt).toBe(first);
    expect((await getVmItem(deps(), vm.id))?.leaseExpiresAt).toBe(first);
  });

  it("deleting a VM deletes its lease", async () => {
    const { vm } = await runningVm("deleted", alice, 600);
    expect(await leaseOf(vm.id)).toBeDefined();
    const del = await requestAction(deps(), ctx(alice), vm.id, { action: "delete" });
    expect((await runOp((del.body as { operation: Operation }).operation.id)).status).toBe("succeeded");
    expect(await getVmItem(deps(), vm.id)).toBeUndefined();
    expect(await leaseOf(vm.id)).toBeUndefined();
  });

  it("drops a lease whose VM is gone, without acting", async () => {
    const past = new Date(Date.now() - 60_000).toISOString();
    await transact(deps().db, [leasePut(deps(), { id: "vm-gone", project: "team" }, "op-gone", past)]);
    expect(await leaseOf("vm-gone")).toBeDefined();
    await sweep(deps());
    expect(await leaseOf("vm-gone")).toBeUndefined();
    expect(await eventsOf("vm-gone", "lease.expired")).toHaveLength(0);
  });
});

describe("leases: end to end on the local stack", () => {
  let t: TestStack;
  let dir: string | undefined;
  let noticeLog: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "usher-leases-"));
    noticeLog = join(dir, "notices.jsonl");
    t = await startTestStack({
      siteConfig: join(import.meta.dirname, "support/configs/leases.config.ts"),
      sweepIntervalSeconds: 1,
      extraEnv: { USHER_TEST_LEASE_LOG: noticeLog },
    });
  });
  afterAll(async () => {
    await t?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Polls until `check` returns a value (the stack's sweep runs every second). */
  async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const v = await check();
      if (v !== undefined) return v;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  it("a short lease warns, expires and destroys its VM; a renewed one outlives its first expiry", async () => {
    const token = await t.userToken("lab", "dana");
    const create = async (name: string, leaseSeconds: number) => {
      const res = await t.api("/v1/vms", { token, json: { name, vcpus: 1, memoryMiB: 256, leaseSeconds } });
      expect(res.status).toBe(202);
      expect((await t.waitForOperation(res.body.operation.id, token)).status).toBe("succeeded");
      return res.body.vm.id as string;
    };
    // The kept VM's first expiry comes before the doomed VM's: the sweep that acts on the doomed one
    // has already passed the kept one's first expiry.
    const kept = await create("kept", 15);
    const doomed = await create("doomed", 20);
    const keptFirst = (await t.api(`/v1/vms/${kept}/lease`, { token })).body.expiresAt as string;
    const doomedExpiry = (await t.api<Vm>(`/v1/vms/${doomed}`, { token })).body.leaseExpiresAt!;
    expect(keptFirst < doomedExpiry).toBe(true);

    // Another project's user sees no such VM; a body must say one thing.
    const stranger = await t.userToken("elsewhere", "erin");
    expect(
      (await t.api(`/v1/vms/${kept}/lease`, { token: stranger, json: { extendSeconds: 60 } })).status,
    ).toBe(404);
    const both = { extendSeconds: 60, expiresAt: new Date(Date.now() + 60_000).toISOString() };
    expect((await t.api(`/v1/vms/${kept}/lease`, { token, json: both })).status).toBe(400);

    const renew = await t.api(`/v1/vms/${kept}/lease`, { token, json: { extendSeconds: 600 } });
    expect(renew.status).toBe(200);
    expect(renew.body.expiresAt).toBe(new Date(Date.parse(keptFirst) + 600_000).toISOString());

    const destroyed = await until("the doomed VM destroyed", async () => {
      const ops = await t.api<{ items: Operation[] }>(`/v1/operations?vmId=${doomed}`, { token });
      const op = ops.body.items.find((o) => o.action === "destroy" && o.status === "succeeded");
      return op;
    });
    expect(destroyed.requester).toBe("usher:leases");
    const vm = await t.api<Vm>(`/v1/vms/${doomed}`, { token });
    expect(vm.body).toMatchObject({ state: "destroyed", leaseExpiresAt: null });
    expect((await t.api(`/v1/vms/${doomed}/lease`, { token })).status).toBe(404);
    expect((await t.api(`/v1/vms/${doomed}/lease`, { token, json: { extendSeconds: 60 } })).status).toBe(409);

    // The notification plugin was told of both, in order.
    const notices = await until("both notices delivered", async () => {
      const mine = readLeaseNotices(noticeLog).filter((l) => l.data.vmId === doomed);
      return mine.length >= 2 ? mine : undefined;
    });
    expect(notices.map((l) => l.event).sort()).toEqual(["lease_expired", "lease_expiring"]);
    const expiring = notices.find((l) => l.event === "lease_expiring")!;
    const expired = notices.find((l) => l.event === "lease_expired")!;
    expect(expiring).toMatchObject({ type: "lease.expiring", project: "lab", subject: `VM#${doomed}` });
    expect(expiring.at < expired.at).toBe(true);

    // The renewed VM still runs, with no action taken and no expiry recorded.
    const keptVm = await t.api<Vm>(`/v1/vms/${kept}`, { token });
    expect(keptVm.body).toMatchObject({ state: "running", leaseExpiresAt: renew.body.expiresAt });
    const keptOps = await t.api<{ items: Operation[] }>(`/v1/operations?vmId=${kept}`, { token });
    expect(keptOps.body.items.map((o) => o.action)).toEqual(["start"]);
    expect(
      readLeaseNotices(noticeLog).filter((l) => l.data.vmId === kept && l.event === "lease_expired"),
    ).toEqual([]);
  });
});
