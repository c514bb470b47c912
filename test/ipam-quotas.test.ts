/**
 * The IP manager and quotas under concurrency, on the real stack with two scheduler processes and the
 * site config test/support/configs/ipam-quotas.config.ts: 36 VM creates at once from two projects,
 * one capped at 12 VMs with 16 addresses, one with 10 addresses for 16 VMs. No address is held twice,
 * the cap holds, every failure says why, each address reaches its VM's (simulated) NIC, and deleting everything gives every
 * address and every unit of quota back.
 */
import { readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Operation, Vm } from "../shared/contracts/vm.ts";
import { ipamKeys } from "../shared/plugins/builtin/ipam.ts";
import { type QuotaUsageItem, quotaKeys } from "../shared/plugins/builtin/quotas.ts";
import { getItem, queryAll } from "../shared/store/base.ts";
import { createDb, type Db } from "../shared/store/client.ts";
import { CAPPED, RANGES } from "./support/configs/ipam-quotas.config.ts";
import { startTestStack, type TestStack } from "./support/stack.ts";

let t: TestStack;
let db: Db;

beforeAll(async () => {
  t = await startTestStack({
    siteConfig: resolve(import.meta.dirname, "support/configs/ipam-quotas.config.ts"),
    schedulerProcesses: 2,
  });
  db = createDb({
    table: t.stack.env.USHER_TABLE!,
    region: "us-east-1",
    endpoint: t.stack.env.USHER_DYNAMODB_ENDPOINT,
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
});
afterAll(() => t?.stop());

const addressItems = async () =>
  (
    await Promise.all(
      Object.values(RANGES).map((r) =>
        queryAll<{ address: string; vmId: string }>(db, {
          KeyConditionExpression: "pk = :pk",
          ExpressionAttributeValues: { ":pk": ipamKeys.address(r.name, "").pk },
          ConsistentRead: true,
        }),
      ),
    )
  ).flat();
const usage = async (project: string) => {
  const u = await getItem<QuotaUsageItem>(db, quotaKeys.usage(project));
  return { vms: u?.usedVms ?? 0, vcpus: u?.usedVcpus ?? 0, memoryMiB: u?.usedMemoryMiB ?? 0 };
};
/** Every simulated domain, from the sim hosts' state files, by vmId. */
async function simDomains(): Promise<Map<string, { network?: Vm["network"] }>> {
  const dir = join(t.dataDir, "sim");
  const out = new Map<string, { network?: Vm["network"] }>();
  for (const f of await readdir(dir)) {
    if (!f.endsWith(".json")) continue;
    const state = JSON.parse(await readFile(join(dir, f), "utf8")) as {
      domains: { vmId: string; network?: Vm["network"] }[];
    };
    for (const d of state.domains) out.set(d.vmId, d);
  }
  return out;
}
const toInt = (a: string) => a.split(".").reduce((n, b) => n * 256 + Number(b), 0);

it("hands out each address once and holds the quota under 36 concurrent creates, then gives all back", async () => {
  const capped = await t.userToken("capped", "cap-user");
  const wide = await t.userToken("wide", "wide-user");

  // A VM bigger than the whole quota is refused at once.
  const huge = await t.api("/v1/vms", {
    token: capped,
    json: { name: "huge", vcpus: CAPPED.vcpus + 1, memoryMiB: 256 },
  });
  expect(huge.status).toBe(403);
  expect(huge.body).toMatchObject({ code: "vetoed", detail: expect.stringMatching(/could never fit/) });

  const asks = [
    ...Array.from({ length: 20 }, (_, i) => ({ token: capped, project: "capped", name: `c-${i}` })),
    ...Array.from({ length: 16 }, (_, i) => ({ token: wide, project: "wide", name: `w-${i}` })),
  ];
  const created = await Promise.all(
    asks.map((a) =>
      t.api<{ vm: Vm; operation: Operation }>("/v1/vms", {
        token: a.token,
        json: { name: a.name, vcpus: 1, memoryMiB: 256 },
      }),
    ),
  );
  expect(created.map((r) => r.status)).toEqual(Array(36).fill(202));
  const ops = await Promise.all(
    created.map((r, i) => t.waitForOperation(r.body.operation.id, asks[i]!.token, 110_000)),
  );
  const byProject = (p: string, s: Operation["status"]) =>
    ops.filter((o, i) => asks[i]!.project === p && o.status === s);

  // `capped`: 16 addresses but a quota of 12 VMs; `wide`: no quota to speak of, but 10 addresses.
  expect(byProject("capped", "succeeded")).toHaveLength(CAPPED.vms);
  for (const o of byProject("capped", "failed"))
    expect(o.error).toMatchObject({
      code: "quota_exceeded",
      message: "project capped would exceed its quota of 12 VMs: 12 in use, 1 more asked",
    });
  expect(byProject("capped", "failed")).toHaveLength(8);
  expect(byProject("wide", "succeeded")).toHaveLength(10);
  for (const o of byProject("wide", "failed")) {
    expect(o.error).toMatchObject({ code: "no_capacity", details: { reason: "addresses_exhausted" } });
    expect(o.error?.message).toMatch(/^no free address for VM w-\d+ in range wide-net$/);
  }
  expect(byProject("wide", "failed")).toHaveLength(6);

  const vms = [
    ...(await t.api<{ items: Vm[] }>("/v1/vms?limit=100", { token: capped })).body.items,
    ...(await t.api<{ items: Vm[] }>("/v1/vms?limit=100", { token: wide })).body.items,
  ];
  expect(vms).toHaveLength(36);
  const running = vms.filter((v) => v.state === "running");
  expect(running).toHaveLength(22);
  expect(new Set(running.map((v) => v.network?.address)).size).toBe(22);
  for (const v of running) {
    const r = RANGES[v.project as keyof typeof RANGES];
    expect(v.network).toMatchObject({ range: r.name, prefixLength: 24, gateway: r.gateway, vlan: r.vlan });
    expect(toInt(v.network!.address)).toBeGreaterThanOrEqual(toInt(r.first));
    expect(toInt(v.network!.address)).toBeLessThanOrEqual(toInt(r.last));
  }
  for (const v of vms.filter((x) => x.state !== "running"))
    expect(v).toMatchObject({ hostId: null, network: null });

  // What the store holds agrees with the views, and each address reached its VM's NIC on the host.
  const held = await addressItems();
  expect(held.map((i) => `${i.vmId}=${i.address}`).sort()).toEqual(
    running.map((v) => `${v.id}=${v.network!.address}`).sort(),
  );
  expect(await usage("capped")).toEqual({ vms: 12, vcpus: 12, memoryMiB: 12 * 256 });
  expect(await usage("wide")).toEqual({ vms: 10, vcpus: 10, memoryMiB: 10 * 256 });
  // The same through the API: a project sees its own quota, an admin any, others none.
  expect((await t.api("/v1/quotas", { token: capped })).body).toEqual({
    project: "capped",
    limits: { vms: 12, vcpus: 24, memoryMiB: null },
    used: { vms: 12, vcpus: 12, memoryMiB: 12 * 256 },
  });
  expect((await t.api("/v1/quotas?project=wide")).body).toMatchObject({
    limits: { vms: 100 },
    used: { vms: 10 },
  });
  expect((await t.api("/v1/quotas?project=capped", { token: wide })).status).toBe(403);
  const domains = await simDomains();
  for (const v of running) expect(domains.get(v.id)?.network, v.id).toEqual(v.network);

  // Delete everything: every address and every unit of quota comes back.
  const deletes = await Promise.all(
    vms.map((v) =>
      t.api<{ operation: Operation }>(`/v1/vms/${v.id}`, {
        method: "DELETE",
        token: v.project === "capped" ? capped : wide,
      }),
    ),
  );
  expect(deletes.map((r) => r.status)).toEqual(Array(36).fill(202));
  const done = await Promise.all(
    deletes.map((r, i) =>
      t.waitForOperation(r.body.operation.id, vms[i]!.project === "capped" ? capped : wide),
    ),
  );
  expect(done.map((o) => o.status)).toEqual(Array(36).fill("succeeded"));
  expect(await addressItems()).toEqual([]);
  expect(await usage("capped")).toEqual({ vms: 0, vcpus: 0, memoryMiB: 0 });
  expect(await usage("wide")).toEqual({ vms: 0, vcpus: 0, memoryMiB: 0 });
});
