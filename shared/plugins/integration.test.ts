/**
 * Plugins where the services call them, against real DynamoDB Local and the SQS emulator: request
 * hooks before a VM is created (a veto writes nothing; an adjusted spec is what is stored), resource
 * hooks inside the capacity claim and release transactions, and the notifications a started VM
 * raises. The scheduler and the finisher run in-process, as the consumers would call them.
 */
import { ScanCommand } from "@aws-sdk/lib-dynamodb";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServiceBed, startServiceBed } from "../../test/support/services.ts";
import type { Principal } from "../auth/principal.ts";
import type { VmNetwork } from "../contracts/common.ts";
import { ErrorCode, UsherError } from "../errors.ts";
import { getClaim } from "../services/capacity.ts";
import type { Deps } from "../services/context.ts";
import { finishOperation } from "../services/finish.ts";
import { createHost, getHostItem } from "../services/hosts.ts";
import { getOpItem } from "../services/operations.ts";
import { scheduleOperation } from "../services/scheduling.ts";
import { createVm, getVmItem, requestAction } from "../services/vms.ts";
import { deleteOf, getItem, notExists, putOf, queryAll, transact } from "../store/base.ts";
import type { VmItem } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { UsherConfig } from "./config.ts";
import { deliverNotifications } from "./outbox.ts";
import type { ClaimBatch, Notice, Plugin, ReleaseBatch } from "./types.ts";

let bed: ServiceBed;
const HOSTS = ["pi-1", "pi-2"];

beforeAll(async () => {
  bed = await startServiceBed();
  for (const id of HOSTS) {
    await createHost(
      bed.deps(),
      { actor: "root", requestId: "req-setup" },
      { id, site: "local", kind: "sim", address: `${id}.sim`, capacity: { vcpus: 16, memoryMiB: 32_768 } },
    );
  }
}, 120_000);
afterAll(() => bed?.stop());

const user = (project: string): Principal => ({ subject: `user-${project}`, project, roles: ["user"] });
const depsWith = (config: UsherConfig): Deps => bed.deps({ config });
const plugin = (name: string, hooks: Plugin["hooks"]): Plugin => ({ name, runsIn: "control-plane", hooks });

type Created = { vm: { id: string; spec: unknown }; operation: { id: string } };

async function create(deps: Deps, principal: Principal, name: string, requestId = `req-${name}`) {
  const res = await createVm(deps, { principal, requestId }, { name, vcpus: 1, memoryMiB: 256 });
  return res.body as Created;
}

/** The scheduler places and dispatches the operation; the agent's report of `powerState` is recorded. */
async function runOp(deps: Deps, opId: string, powerState: "running" | "absent") {
  await scheduleOperation(deps, { opId, requestId: "req-run" });
  const op = (await getOpItem(deps, opId))!;
  expect(op.status).toBe("dispatched");
  await finishOperation(
    deps,
    op,
    await getVmItem(deps, op.vmId),
    { ok: true, powerState },
    { dispatched: true },
  );
}

/** Every item of the table written for this request id (VM, operation, event, idempotency record...). */
async function itemsOfRequest(requestId: string) {
  const db = bed.deps().db;
  const out = await db.doc.send(
    new ScanCommand({
      TableName: db.table,
      FilterExpression: "requestId = :r",
      ExpressionAttributeValues: { ":r": requestId },
    }),
  );
  return out.Items ?? [];
}

const claimsOf = async (vmId: string) =>
  (await Promise.all(HOSTS.map((h) => getClaim(bed.deps(), h, vmId)))).filter(Boolean);

describe("request hooks in createVm", () => {
  it("a veto, or a failing policy plugin, writes nothing: no VM, no operation, no name, no message", async () => {
    const refusals: [UsherConfig, string][] = [
      [
        {
          plugins: [
            plugin("weekdays", {
              start_request: () => ({ veto: "no new VMs during the freeze", details: { until: "monday" } }),
            }),
          ],
        },
        ErrorCode.vetoed,
      ],
      [
        {
          plugins: [
            plugin("ldap", {
              start_request: () => {
                throw new Error("directory unreachable");
              },
            }),
          ],
        },
        ErrorCode.pluginFailed,
      ],
    ];
    const principal = user("frozen");
    for (const [config, code] of refusals) {
      const requestId = `req-refused-${code}`;
      const err = await create(depsWith(config), principal, "web", requestId).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(UsherError);
      expect((err as UsherError).code).toBe(code);
      expect((err as UsherError).details?.plugin).toBe(config.plugins[0]?.name);
      expect(await itemsOfRequest(requestId)).toEqual([]);
      const sent = (await bed.receive(bed.resources.queueUrls.ops)).map((b) => JSON.parse(b).requestId);
      expect(sent).not.toContain(requestId);
    }
    const veto = await create(depsWith(refusals[0]![0]), principal, "web").catch((e: UsherError) => e);
    expect((veto as UsherError).message).toBe("no new VMs during the freeze");
    expect((veto as UsherError).details).toEqual({ plugin: "weekdays", until: "monday" });

    expect(await getItem(bed.deps().db, keys.vmName("frozen", "web"))).toBeUndefined();
    const vms = await queryAll(bed.deps().db, {
      IndexName: "gsi1",
      KeyConditionExpression: "gsi1pk = :pk",
      ExpressionAttributeValues: { ":pk": keys.vmIndex("frozen", "").gsi1pk },
    });
    expect(vms).toEqual([]);
    // The name was never reserved: without the plugin the same request goes through.
    const ok = await create(bed.deps(), principal, "web", "req-unfrozen");
    expect(await getItem(bed.deps().db, keys.vmName("frozen", "web"))).toMatchObject({ vmId: ok.vm.id });
  });

  it("an adjusting plugin's spec and arguments are what is stored, placed and sent", async () => {
    const asked: unknown[] = [];
    const deps = depsWith({
      plugins: [
        plugin("sizes", {
          start_request: (_ctx, req) => {
            asked.push(req.spec);
            return {
              spec: { ...req.spec, memoryMiB: 2048, image: "base-2404" },
              args: { targetHostId: "pi-2" },
            };
          },
        }),
      ],
    });
    const created = await create(deps, user("sized"), "db");
    const adjusted = { vcpus: 1, memoryMiB: 2048, image: "base-2404" };
    expect(asked).toEqual([{ vcpus: 1, memoryMiB: 256 }]);
    expect(created.vm.spec).toEqual(adjusted);
    expect((await getVmItem(deps, created.vm.id))?.spec).toEqual(adjusted);
    expect((await getOpItem(deps, created.operation.id))?.args).toEqual({ targetHostId: "pi-2" });
    const events = await queryAll<{ eventType: string; data: { spec?: unknown } }>(deps.db, {
      KeyConditionExpression: "pk = :pk AND begins_with(sk, :ev)",
      ExpressionAttributeValues: { ":pk": keys.vm(created.vm.id).pk, ":ev": "EV#" },
    });
    expect(events.find((e) => e.eventType === "vm.created")?.data.spec).toEqual(adjusted);

    await scheduleOperation(deps, { opId: created.operation.id, requestId: "req-sized" });
    expect((await getVmItem(deps, created.vm.id))?.hostId).toBe("pi-2");
    expect(await getClaim(deps, "pi-2", created.vm.id)).toMatchObject({ vcpus: 1, memoryMiB: 2048 });
    const commands = (await bed.receive(bed.resources.queueUrls.agents.local!))
      .map((jws) => decodeJwt(jws).cmd as { opId: string; spec: unknown })
      .filter((c) => c.opId === created.operation.id);
    expect(commands.map((c) => c.spec)).toEqual([adjusted]);
  });
});

describe("resource hooks", () => {
  const addressKey = (address: string) => ({ pk: `TESTIP#${address}`, sk: "ADDR" });
  const network = (address: string): VmNetwork => ({ range: "lab", address, prefixLength: 24 });

  /** A toy address manager: one item per address, written only if absent, inside the claim. */
  function ipam(address: string, seen: { claims: ClaimBatch[]; releases: ReleaseBatch[] }): Plugin {
    return plugin("ipam", {
      claim: (ctx, batch) => {
        seen.claims.push(batch);
        const vm = batch.placements[0]!.vm;
        return {
          items: [
            {
              // One VM per address: the put fails if the address is taken.
              Put: putOf(ctx.deps.db.table, { ...addressKey(address), vmId: vm.id }, notExists),
            },
          ],
          vmSet: { [vm.id]: { network: network(address) } },
          onConditionFailed: (failed) =>
            new UsherError(ErrorCode.quotaExceeded, `address ${address} is taken`, { details: { failed } }),
        };
      },
      release: (ctx, batch) => {
        seen.releases.push(batch);
        const vm = batch.vms[0]!;
        return {
          items: [
            {
              Delete: deleteOf(ctx.deps.db.table, addressKey(address), {
                expr: "vmId = :v",
                values: { ":v": vm.id },
              }),
            },
            {
              Put: putOf(ctx.deps.db.table, {
                pk: `TESTIPLOG#${vm.id}`,
                sk: "RELEASED",
                address,
                action: batch.op?.action,
              }),
            },
          ],
          vmRemove: { [vm.id]: ["network"] },
        };
      },
    });
  }

  it("a claim contribution whose condition fails fails the operation with its error and leaves no claim", async () => {
    const seen = { claims: [] as ClaimBatch[], releases: [] as ReleaseBatch[] };
    const deps = depsWith({ plugins: [ipam("10.9.0.5", seen)] });
    // Someone else holds the address.
    await transact(deps.db, [{ Put: putOf(deps.db.table, { ...addressKey("10.9.0.5"), vmId: "vm-other" }) }]);
    const free = async () => Promise.all(HOSTS.map(async (h) => (await getHostItem(deps, h))!.freeMemoryMiB));
    const freeBefore = await free();

    const created = await create(deps, user("ipam"), "no-address");
    await scheduleOperation(deps, { opId: created.operation.id, requestId: "req-no-address" });

    const op = await getOpItem(deps, created.operation.id);
    expect(op?.status).toBe("failed");
    expect(op?.error).toMatchObject({
      code: ErrorCode.quotaExceeded,
      message: "address 10.9.0.5 is taken",
      details: { failed: [0] },
    });
    expect(seen.claims).toHaveLength(1);
    expect(seen.claims[0]).toMatchObject({ field: "hostId", op: { id: created.operation.id } });
    expect(await claimsOf(created.vm.id)).toEqual([]);
    expect(await free()).toEqual(freeBefore);
    const vm = (await getVmItem(deps, created.vm.id))!;
    expect(vm.hostId).toBeUndefined();
    expect(vm.network).toBeUndefined();
    expect(vm.state).toBe("error");
    expect(await getItem(deps.db, addressKey("10.9.0.5"))).toMatchObject({ vmId: "vm-other" });
    expect(seen.releases).toEqual([]);
  });

  it("claim contributions join the claim; release contributions are written when the VM is destroyed", async () => {
    const seen = { claims: [] as ClaimBatch[], releases: [] as ReleaseBatch[] };
    const deps = depsWith({ plugins: [ipam("10.9.0.7", seen)] });
    const created = await create(deps, user("ipam"), "with-address");
    await runOp(deps, created.operation.id, "running");

    let vm: VmItem = (await getVmItem(deps, created.vm.id))!;
    expect(vm.state).toBe("running");
    expect(vm.network).toEqual(network("10.9.0.7"));
    expect(await claimsOf(vm.id)).toHaveLength(1);
    expect(await getItem(deps.db, addressKey("10.9.0.7"))).toMatchObject({ vmId: vm.id });
    expect(seen.releases).toEqual([]);

    const destroy = (
      await requestAction(deps, { principal: user("ipam"), requestId: "req-destroy" }, vm.id, {
        action: "destroy",
      })
    ).body as { operation: { id: string } };
    await runOp(deps, destroy.operation.id, "absent");

    vm = (await getVmItem(deps, created.vm.id))!;
    expect(vm.state).toBe("destroyed");
    expect(vm.hostId).toBeUndefined();
    expect(vm.network).toBeUndefined();
    expect(await claimsOf(vm.id)).toEqual([]);
    expect(await getItem(deps.db, addressKey("10.9.0.7"))).toBeUndefined();
    expect(await getItem(deps.db, { pk: `TESTIPLOG#${vm.id}`, sk: "RELEASED" })).toMatchObject({
      address: "10.9.0.7",
      action: "destroy",
    });
    expect(seen.releases).toHaveLength(1);
    expect(seen.releases[0]?.op?.id).toBe(destroy.operation.id);
    expect(seen.releases[0]?.vms.map((v) => v.id)).toEqual([vm.id]);
  });
});

describe("notifications from a VM's life", () => {
  it("a VM that started raises `start` and `state_change`, delivered with the operation's ids", async () => {
    const got: Notice[] = [];
    const deps = depsWith({
      plugins: [
        plugin("watch", {
          start: (_ctx, n) => void got.push(n),
          state_change: (_ctx, n) => void got.push(n),
        }),
      ],
    });
    const created = await create(deps, user("watched"), "watched-1", "req-watched");
    await runOp(deps, created.operation.id, "running");
    const report = await deliverNotifications(deps);
    expect(report.givenUp + report.retrying).toBe(0);

    const mine = got.filter((n) => n.subject === keys.vm(created.vm.id).pk);
    expect(mine.map((n) => n.event).sort()).toEqual(["start", "state_change", "state_change"]);
    const start = mine.find((n) => n.event === "start");
    expect(start).toMatchObject({
      type: "op.succeeded",
      project: "watched",
      requestId: "req-watched",
      opId: created.operation.id,
      attempt: 0,
      data: { action: "start" },
    });
    const changes = mine.filter((n) => n.event === "state_change").map((n) => n.data.state);
    expect(changes).toEqual([
      { from: "pending", to: "starting" },
      { from: "starting", to: "running" },
    ]);
    // The same event carries both: the succeeded start is also the change to running.
    expect(mine.find((n) => n.event === "state_change" && n.eventId === start?.eventId)).toBeTruthy();
    expect(await deliverNotifications(deps)).toMatchObject({ due: 0 });
  });
});
