/**
 * The scheduler end to end on the local stack (site config test/support/configs/scheduler.config.ts):
 * a cluster's VMs are placed all or none, anti-affinity holds across its members, a site policy runs
 * a plugin's filter, and the dry-run endpoint shows candidates and rejections without claiming.
 */
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../shared/contracts/host.ts";
import type { Operation, Vm } from "../shared/contracts/vm.ts";
import { startTestStack, type TestStack } from "./support/stack.ts";

let t: TestStack;
let user: string;

beforeAll(async () => {
  t = await startTestStack({
    siteConfig: resolve(import.meta.dirname, "support/configs/scheduler.config.ts"),
  });
  user = await t.userToken("sched", "sam");
});
afterAll(() => t?.stop());

type ClusterDetail = { id: string; policy: string | null; gang: { status: string } | null; vms: Vm[] };

async function startCluster(json: Record<string, unknown>) {
  const res = await t.api<{ cluster: { id: string }; vms: Vm[]; operations: Operation[] }>("/v1/clusters", {
    method: "POST",
    token: user,
    json,
  });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  const ops = await Promise.all(res.body.operations.map((o) => t.waitForOperation(o.id, user)));
  const detail = (await t.api<ClusterDetail>(`/v1/clusters/${res.body.cluster.id}`, { token: user })).body;
  return { ops, detail };
}

const allocated = async () =>
  Object.fromEntries(
    (await t.api<{ items: Host[] }>("/v1/hosts")).body.items.map((h) => [h.id, h.allocated.vcpus]),
  );

describe("gang placement", () => {
  it("leaves every member of a cluster that cannot fit failed with no_capacity, and claims nothing", async () => {
    const before = await allocated();
    const { ops, detail } = await startCluster({
      name: "wide",
      count: 4,
      vcpus: 1,
      memoryMiB: 256,
      placement: { antiAffinityGroup: "wide" },
    });
    expect(ops.map((o) => o.status)).toEqual(["failed", "failed", "failed", "failed"]);
    for (const op of ops) {
      expect(op.error?.code).toBe("no_capacity");
      expect(op.error?.message).toBe(ops[0]!.error?.message);
    }
    expect(ops[0]!.error?.message).toMatch(
      /^cluster wide: no member was placed, as member wide-node-4 fits no host: no host fits among 3 considered: anti_affinity rejected 3/,
    );
    expect(ops[0]!.error?.details).toMatchObject({ rejections: { anti_affinity: { count: 3 } } });
    expect(detail.gang?.status).toBe("failed");
    expect(detail.vms.map((v) => [v.state, v.hostId])).toEqual(Array(4).fill(["error", null]));
    expect(await allocated()).toEqual(before);
  });

  it("places every member of a cluster that fits, anti-affinity honoured across them", async () => {
    const { ops, detail } = await startCluster({
      name: "apart",
      count: 3,
      vcpus: 1,
      memoryMiB: 256,
      placement: { antiAffinityGroup: "apart" },
    });
    expect(ops.map((o) => o.status)).toEqual(["succeeded", "succeeded", "succeeded"]);
    expect(detail.gang?.status).toBe("placed");
    expect(detail.vms.every((v) => v.state === "running")).toBe(true);
    expect(new Set(detail.vms.map((v) => v.hostId))).toEqual(new Set(["host-1", "host-2", "host-3"]));
    expect(detail.vms[0]!.placement).toEqual({ antiAffinityGroup: "apart" });
  });

  it("runs a site policy naming a plugin's filter, and refuses a policy the site lacks", async () => {
    const patch = (labels: Record<string, string>) =>
      t.api("/v1/hosts/host-1", { method: "PATCH", json: { labels } });
    expect((await patch({ maintenance: "yes" })).status).toBe(200);
    try {
      // Pack alone would fill host-1 (as full as host-2, and first by id); careful passes it over.
      const { ops, detail } = await startCluster({
        name: "careful",
        count: 2,
        vcpus: 1,
        memoryMiB: 256,
        policy: "careful",
      });
      expect(ops.map((o) => o.status)).toEqual(["succeeded", "succeeded"]);
      expect(detail.policy).toBe("careful");
      expect(detail.vms.map((v) => v.hostId)).toEqual(["host-2", "host-2"]);
    } finally {
      await patch({});
    }
    const bad = await t.api("/v1/clusters", {
      method: "POST",
      token: user,
      json: { name: "bad", count: 1, vcpus: 1, memoryMiB: 256, policy: "nonesuch" },
    });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({
      code: "validation_failed",
      detail: "unknown scheduler policy nonesuch",
    });
  });
});

describe("dry run", () => {
  it("shows each candidate's scores and each filter's rejections, for operators only, claiming nothing", async () => {
    const before = await allocated();
    const one = await t.api("/v1/scheduler/dry-run", { json: { vcpus: 20, memoryMiB: 1024 } });
    expect(one.status, JSON.stringify(one.body)).toBe(200);
    expect(one.body).toMatchObject({
      site: "local",
      policy: "pack",
      considered: 3,
      rejections: { vcpus: { count: 2, reason: "not enough free vCPUs" } },
      message: null,
      gang: null,
    });
    expect(one.body.candidates).toEqual([
      {
        hostId: "host-3",
        score: expect.any(Number),
        scores: {
          device_reserve: 0,
          fragmentation: expect.any(Number),
          soft_affinity: 0,
          pack: expect.any(Number),
        },
      },
    ]);

    const spread = await t.api("/v1/scheduler/dry-run", {
      json: { vcpus: 1, memoryMiB: 256, project: "spready" },
    });
    expect(spread.body.policy).toBe("spread");
    expect(spread.body.candidates.map((c: { hostId: string }) => c.hostId)[0]).toBe("host-3");

    const gang = await t.api("/v1/scheduler/dry-run", {
      json: { members: [{ role: "big", count: 2, vcpus: 20, memoryMiB: 1024 }] },
    });
    expect(gang.status).toBe(200);
    expect(gang.body.gang).toEqual({
      placed: false,
      assignments: [
        { member: "big-1", hostId: null },
        { member: "big-2", hostId: null },
      ],
      failedMember: "big-2",
      // big-1 would take the only host with room, which leaves none for big-2.
      steps: [
        {
          member: "big-1",
          hostId: "host-3",
          total: 1,
          candidates: [one.body.candidates[0]],
          rejections: { vcpus: { count: 2, reason: "not enough free vCPUs" } },
        },
        {
          member: "big-2",
          hostId: null,
          total: 0,
          candidates: [],
          rejections: { vcpus: { count: 3, reason: "not enough free vCPUs" } },
        },
      ],
    });
    expect(gang.body.message).toMatch(/fits no host: no host fits among 3 considered: vcpus rejected 3/);

    expect(
      (await t.api("/v1/scheduler/dry-run", { token: user, json: { vcpus: 1, memoryMiB: 256 } })).status,
    ).toBe(403);
    // An operator sees its own project's placement; another project's groups are for admins.
    const operator = await t.mintToken({ sub: "olly", project: "ops", roles: ["operator"] });
    const own = await t.api("/v1/scheduler/dry-run", { token: operator, json: { vcpus: 1, memoryMiB: 256 } });
    expect(own.status).toBe(200);
    const theirs = await t.api("/v1/scheduler/dry-run", {
      token: operator,
      json: { vcpus: 1, memoryMiB: 256, project: "sched" },
    });
    expect(theirs.status).toBe(403);
    expect(
      (await t.api("/v1/scheduler/dry-run", { json: { vcpus: 1, memoryMiB: 256, policy: "nonesuch" } }))
        .status,
    ).toBe(400);
    expect(
      (await t.api("/v1/scheduler/dry-run", { token: null, json: { vcpus: 1, memoryMiB: 256 } })).status,
    ).toBe(401);
    expect(await allocated()).toEqual(before);
    const doc = await t.api("/v1/openapi.json");
    expect(Object.keys(doc.body.paths)).toContain("/v1/scheduler/dry-run");
    expect(doc.body.components.schemas.SchedulerDryRunGangStep.properties).toHaveProperty("total");
  });
});
