/**
 * End to end on the real local stack (DynamoDB Local, fauxqs, API on Node, consumers, agent with
 * simulated hosts): VM creation, every action's happy path, clusters, idempotency, project isolation.
 */
import { generateKeyPair, importJWK, SignJWT, UnsecuredJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TOKEN_AUDIENCE, TOKEN_ISSUER } from "../infra/local/keys.ts";
import type { Operation, Vm } from "../shared/contracts/vm.ts";
import { startTestStack, type TestStack } from "./support/stack.ts";

let t: TestStack;
let user: string;

beforeAll(async () => {
  t = await startTestStack();
  user = await t.userToken("alpha", "alice");
});
afterAll(() => t?.stop());

async function createVm(name: string, token = user, extra: Record<string, unknown> = {}) {
  const res = await t.api<{ vm: Vm; operation: Operation }>("/v1/vms", {
    method: "POST",
    token,
    json: { name, vcpus: 1, memoryMiB: 512, ...extra },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return res.body;
}

async function act(vmId: string, action: string, extra: Record<string, unknown> = {}, token = user) {
  const res = await t.api<{ operation: Operation }>(`/v1/vms/${vmId}/actions`, {
    method: "POST",
    token,
    json: { action, ...extra },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  const op = await t.waitForOperation(res.body.operation.id, token);
  expect(op.status, JSON.stringify(op.error)).toBe("succeeded");
  return op;
}

const getVm = async (id: string, token = user) => (await t.api<Vm>(`/v1/vms/${id}`, { token })).body;

describe("a VM's life", () => {
  it("creates a VM that reaches running on a host", async () => {
    const { vm, operation } = await createVm("web-1");
    expect(vm).toMatchObject({ name: "web-1", state: "pending", hostId: null, project: "alpha" });
    expect(operation).toMatchObject({ vmId: vm.id, action: "start", status: "queued", error: null });
    const done = await t.waitForOperation(operation.id, user);
    expect(done.status).toBe("succeeded");
    const now = await getVm(vm.id);
    expect(now.state).toBe("running");
    expect(now.hostId).toMatch(/^host-/);
    expect(done.hostId).toBe(now.hostId);
  });

  it("runs every action's happy path, with state and capacity following", async () => {
    const { vm, operation } = await createVm("life-1", user, { vcpus: 2, memoryMiB: 1024 });
    await t.waitForOperation(operation.id, user);
    const steps: [string, string][] = [
      ["pause", "paused"],
      ["unpause", "running"],
      ["reboot", "running"],
      ["cycle", "running"],
      ["suspend", "suspended"],
      ["resume", "running"],
      ["shutdown", "stopped"],
      ["start", "running"],
    ];
    for (const [action, state] of steps) {
      await act(vm.id, action);
      expect((await getVm(vm.id)).state, action).toBe(state);
    }
    const before = await getVm(vm.id);
    const source = before.hostId!;
    const srcBefore = (await t.api(`/v1/hosts/${source}`)).body;

    // Migration to a host the admin names; capacity moves with the VM.
    const target = source === "host-1" ? "host-2" : "host-1";
    const tgtBefore = (await t.api(`/v1/hosts/${target}`)).body;
    const migration = await act(vm.id, "migrate", { targetHostId: target, live: true }, t.adminToken);
    expect(migration).toMatchObject({
      hostId: source,
      progressPercent: 100,
      args: { targetHostId: target, live: true },
    });
    const moved = await getVm(vm.id);
    expect(moved).toMatchObject({ state: "running", hostId: target });
    const srcAfter = (await t.api(`/v1/hosts/${source}`)).body;
    const tgtAfter = (await t.api(`/v1/hosts/${target}`)).body;
    expect(srcBefore.allocated.vcpus - srcAfter.allocated.vcpus).toBe(2);
    expect(tgtAfter.allocated.vcpus - tgtBefore.allocated.vcpus).toBe(2);
    expect(tgtAfter.allocated.memoryMiB - tgtBefore.allocated.memoryMiB).toBe(1024);

    // A migration the scheduler places itself lands on another host.
    await act(vm.id, "migrate");
    const again = await getVm(vm.id);
    expect(again.hostId).not.toBe(target);

    // destroy frees the capacity; start places the VM again.
    const holder = again.hostId!;
    const holderBefore = (await t.api(`/v1/hosts/${holder}`)).body;
    await act(vm.id, "destroy");
    expect(await getVm(vm.id)).toMatchObject({ state: "destroyed", hostId: null });
    expect((await t.api(`/v1/hosts/${holder}`)).body.allocated.vcpus).toBe(holderBefore.allocated.vcpus - 2);
    await act(vm.id, "start");
    expect((await getVm(vm.id)).state).toBe("running");

    // The operation log lists every step in submission order.
    const ops = (
      await t.api<{ items: Operation[] }>(`/v1/operations?vmId=${vm.id}&limit=100`, { token: user })
    ).body.items;
    expect(ops.map((o) => o.action)).toEqual([
      "start",
      ...steps.map((s) => s[0]),
      "migrate",
      "migrate",
      "destroy",
      "start",
    ]);
    expect(ops.map((o) => o.seq)).toEqual(ops.map((_, i) => i + 1));
    expect(ops.every((o) => o.status === "succeeded")).toBe(true);
  });

  it("deletes a VM: destroyed, unregistered, its name free again, its capacity released", async () => {
    const { vm, operation } = await createVm("gone-1", user, { vcpus: 3, memoryMiB: 3072 });
    await t.waitForOperation(operation.id, user);
    const hostId = (await getVm(vm.id)).hostId!;
    const before = (await t.api(`/v1/hosts/${hostId}`)).body.allocated.vcpus;
    const del = await t.api<{ operation: Operation }>(`/v1/vms/${vm.id}`, { method: "DELETE", token: user });
    expect(del.status).toBe(202);
    expect((await t.waitForOperation(del.body.operation.id, user)).status).toBe("succeeded");
    expect((await t.api(`/v1/vms/${vm.id}`, { token: user })).status).toBe(404);
    expect((await t.api(`/v1/hosts/${hostId}`)).body.allocated.vcpus).toBe(before - 3);
    const again = await createVm("gone-1");
    expect(again.vm.id).not.toBe(vm.id);
  });

  it("queues actions behind each other and runs them in submission order", async () => {
    const { vm } = await createVm("order-1");
    // Submitted at once, before the start has finished: each waits its turn.
    const submitted: Operation[] = [];
    for (const action of ["pause", "unpause", "shutdown"]) {
      const res = await t.api<{ operation: Operation }>(`/v1/vms/${vm.id}/actions`, {
        method: "POST",
        token: user,
        json: { action },
      });
      expect(res.status).toBe(202);
      submitted.push(res.body.operation);
    }
    const done = await Promise.all(submitted.map((o) => t.waitForOperation(o.id, user)));
    expect(done.map((o) => o.status)).toEqual(["succeeded", "succeeded", "succeeded"]);
    const finished = done.map((o) => Date.parse(o.finishedAt!));
    expect(finished).toEqual([...finished].sort((a, b) => a - b));
    expect((await getVm(vm.id)).state).toBe("stopped");
  });

  it("refuses an action the VM's state cannot take with 409 invalid_state", async () => {
    const { vm, operation } = await createVm("idle-1");
    await t.waitForOperation(operation.id, user);
    const res = await t.api(`/v1/vms/${vm.id}/actions`, {
      method: "POST",
      token: user,
      json: { action: "unpause" },
    });
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ code: "invalid_state" });
    expect(res.headers.get("content-type")).toBe("application/problem+json");
  });

  it("refuses a duplicate name and a non-admin targetHostId", async () => {
    await createVm("dup-1");
    const dup = await t.api("/v1/vms", {
      method: "POST",
      token: user,
      json: { name: "dup-1", vcpus: 1, memoryMiB: 512 },
    });
    expect(dup.status).toBe(409);
    expect(dup.body.code).toBe("name_taken");
    const { vm } = await createVm("dup-2");
    const res = await t.api(`/v1/vms/${vm.id}/actions`, {
      method: "POST",
      token: user,
      json: { action: "migrate", targetHostId: "host-1" },
    });
    expect(res.status).toBe(403);
  });

  it("follows one request id from the API through the queues to the agent and back", async () => {
    const requestId = "trace-e2e-0001";
    const res = await t.api<{ operation: Operation }>("/v1/vms", {
      method: "POST",
      token: user,
      headers: { "x-request-id": requestId },
      json: { name: "traced-1", vcpus: 1, memoryMiB: 256 },
    });
    expect(res.headers.get("x-request-id")).toBe(requestId);
    await t.waitForOperation(res.body.operation.id, user);
    await new Promise((r) => setTimeout(r, 300));
    const sources = new Set(t.logsFor(requestId).map((l) => l.source.split("-")[0]));
    expect([...sources]).toEqual(expect.arrayContaining(["api", "agent"]));
    expect(t.logsFor(requestId).some((l) => l.msg === "operation dispatched")).toBe(true);
    expect(t.logsFor(requestId).some((l) => l.msg === "operation succeeded")).toBe(true);
  });
});

describe("virtual clusters", () => {
  it("starts a cluster of 5 alike VMs and acts on all of them", async () => {
    const res = await t.api("/v1/clusters", {
      method: "POST",
      token: user,
      json: { name: "batch", count: 5, vcpus: 1, memoryMiB: 256 },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    expect(res.body.vms).toHaveLength(5);
    expect(res.body.vms.map((v: Vm) => v.name)).toEqual([
      "batch-node-1",
      "batch-node-2",
      "batch-node-3",
      "batch-node-4",
      "batch-node-5",
    ]);
    const ops = await Promise.all(res.body.operations.map((o: Operation) => t.waitForOperation(o.id, user)));
    expect(ops.every((o) => o.status === "succeeded")).toBe(true);
    const id = res.body.cluster.id;
    const detail = (await t.api(`/v1/clusters/${id}`, { token: user })).body;
    expect(detail.vms).toHaveLength(5);
    expect(detail.vms.every((v: Vm) => v.state === "running" && v.clusterId === id)).toBe(true);
    const listed = (await t.api(`/v1/vms?clusterId=${id}`, { token: user })).body.items;
    expect(listed).toHaveLength(5);

    const action = await t.api(`/v1/clusters/${id}/actions`, {
      method: "POST",
      token: user,
      json: { action: "shutdown" },
    });
    expect(action.status).toBe(202);
    const shut = await Promise.all(
      action.body.operations.map((o: Operation) => t.waitForOperation(o.id, user)),
    );
    expect(shut.every((o) => o.status === "succeeded")).toBe(true);
    const stopped = (await t.api(`/v1/vms?clusterId=${id}&state=stopped`, { token: user })).body.items;
    expect(stopped).toHaveLength(5);
    expect(
      (await t.api("/v1/clusters", { token: user })).body.items.map((c: { id: string }) => c.id),
    ).toContain(id);
  });

  it("starts a mixed cluster: a head node and workers", async () => {
    const res = await t.api("/v1/clusters", {
      method: "POST",
      token: user,
      json: {
        name: "hpc",
        members: [
          { role: "head", count: 1, vcpus: 2, memoryMiB: 1024 },
          { role: "worker", count: 3, vcpus: 1, memoryMiB: 512 },
        ],
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    expect(res.body.vms.map((v: Vm) => v.name)).toEqual([
      "hpc-head-1",
      "hpc-worker-1",
      "hpc-worker-2",
      "hpc-worker-3",
    ]);
    expect(res.body.vms[0].spec).toMatchObject({ vcpus: 2, memoryMiB: 1024 });
    const ops = await Promise.all(res.body.operations.map((o: Operation) => t.waitForOperation(o.id, user)));
    expect(ops.map((o) => o.status)).toEqual(["succeeded", "succeeded", "succeeded", "succeeded"]);
  });
});

describe("idempotent retries", () => {
  it("replays the same response for the same key and body, and makes one operation", async () => {
    const init = {
      method: "POST",
      token: user,
      headers: { "idempotency-key": "create-idem-1" },
      json: { name: "idem-1", vcpus: 1, memoryMiB: 256 },
    };
    const first = await t.api("/v1/vms", init);
    const second = await t.api("/v1/vms", init);
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(second.body).toEqual(first.body);
    expect(second.headers.get("idempotent-replayed")).toBe("true");
    const list = (await t.api<{ items: Vm[] }>("/v1/vms?limit=200", { token: user })).body.items.filter(
      (v) => v.name === "idem-1",
    );
    expect(list).toHaveLength(1);

    const clash = await t.api("/v1/vms", { ...init, json: { name: "idem-1", vcpus: 2, memoryMiB: 256 } });
    expect(clash.status).toBe(409);
    expect(clash.body.code).toBe("idempotency_key_reused");
  });

  it("replays, rather than refuses, concurrent creates with the same key", async () => {
    const init = {
      method: "POST",
      token: user,
      headers: { "idempotency-key": "create-race-1" },
      json: { name: "race-1", vcpus: 1, memoryMiB: 256 },
    };
    const answers = await Promise.all([
      t.api("/v1/vms", init),
      t.api("/v1/vms", init),
      t.api("/v1/vms", init),
    ]);
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202]);
    expect(new Set(answers.map((a) => a.body.vm.id)).size).toBe(1);
  });

  it("makes one operation for concurrent retries of an action", async () => {
    const { vm, operation } = await createVm("idem-2");
    await t.waitForOperation(operation.id, user);
    const init = {
      method: "POST",
      token: user,
      headers: { "idempotency-key": "pause-idem-2" },
      json: { action: "pause" },
    };
    const answers = await Promise.all([
      t.api(`/v1/vms/${vm.id}/actions`, init),
      t.api(`/v1/vms/${vm.id}/actions`, init),
      t.api(`/v1/vms/${vm.id}/actions`, init),
    ]);
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202]);
    expect(new Set(answers.map((a) => a.body.operation.id)).size).toBe(1);
    const ops = (await t.api<{ items: Operation[] }>(`/v1/operations?vmId=${vm.id}`, { token: user })).body
      .items;
    expect(ops.map((o) => o.action)).toEqual(["start", "pause"]);
  });
});

describe("host registration", () => {
  it("replays a retried registration with the same key, and refuses a second without one", async () => {
    const body = {
      id: "extra-1",
      site: "spare",
      kind: "sim",
      address: "extra-1.sim",
      capacity: { vcpus: 4, memoryMiB: 4096 },
    };
    const init = { method: "POST", headers: { "idempotency-key": "host-extra-1" }, json: body };
    const first = await t.api("/v1/hosts", init);
    const retry = await t.api("/v1/hosts", init);
    expect(first.status).toBe(201);
    expect(retry.status).toBe(201);
    expect(retry.body).toEqual(first.body);
    expect((await t.api("/v1/hosts", { method: "POST", json: body })).status).toBe(409);
    const patched = await t.api("/v1/hosts/extra-1", { method: "PATCH", json: { ratios: { cpu: 2 } } });
    expect(patched.body.limits.vcpus).toBe(8);
  });
});

describe("project isolation", () => {
  it("answers another project's VM, operation and actions with 404, exactly like a missing one", async () => {
    const { vm, operation } = await createVm("private-1");
    const mallory = await t.userToken("beta", "mallory");
    const missing = await t.api("/v1/vms/vm-does-not-exist", { token: mallory });
    const foreign = await t.api(`/v1/vms/${vm.id}`, { token: mallory });
    expect(foreign.status).toBe(404);
    expect(foreign.body.code).toBe(missing.body.code);
    expect(foreign.body.detail.replace(vm.id, "X")).toBe(
      missing.body.detail.replace("vm-does-not-exist", "X"),
    );
    expect((await t.api(`/v1/operations/${operation.id}`, { token: mallory })).status).toBe(404);
    expect(
      (
        await t.api(`/v1/vms/${vm.id}/actions`, {
          method: "POST",
          token: mallory,
          json: { action: "shutdown" },
        })
      ).status,
    ).toBe(404);
    expect((await t.api(`/v1/vms/${vm.id}`, { method: "DELETE", token: mallory })).status).toBe(404);
    const list = (await t.api<{ items: Vm[] }>("/v1/vms", { token: mallory })).body.items;
    expect(list.find((v) => v.id === vm.id)).toBeUndefined();
    expect((await t.api("/v1/hosts", { token: mallory })).status).toBe(403);
  });
});

describe("the edge on the real stack", () => {
  it("refuses alg none, wrong issuer or audience, expired, missing exp and bad signatures with 401", async () => {
    const { privateJwk } = t.stack.keys.userTokens;
    const key = await importJWK(privateJwk, "ES256");
    const other = (await generateKeyPair("ES256")).privateKey;
    const sign = (o: { iss?: string; aud?: string; exp?: number | null; with?: CryptoKey | Uint8Array }) => {
      const jwt = new SignJWT({ project: "alpha", roles: ["user"] })
        .setProtectedHeader({ alg: "ES256", kid: privateJwk.kid })
        .setSubject("alice")
        .setIssuer(o.iss ?? TOKEN_ISSUER)
        .setAudience(o.aud ?? TOKEN_AUDIENCE);
      if (o.exp !== null) jwt.setExpirationTime(o.exp ?? "5m");
      return jwt.sign(o.with ?? key);
    };
    // The control: a token made this way is accepted.
    expect((await t.api("/v1/vms", { token: await sign({}) })).status).toBe(200);
    const bad = {
      "alg none": new UnsecuredJWT({ project: "alpha", roles: ["admin"] })
        .setSubject("alice")
        .setIssuer(TOKEN_ISSUER)
        .setAudience(TOKEN_AUDIENCE)
        .setExpirationTime("5m")
        .encode(),
      "wrong issuer": await sign({ iss: "https://elsewhere.example" }),
      "wrong audience": await sign({ aud: "another-api" }),
      expired: await sign({ exp: Math.floor(Date.now() / 1000) - 120 }),
      "missing exp": await sign({ exp: null }),
      "bad signature": await sign({ with: other }),
    };
    for (const [name, token] of Object.entries(bad)) {
      const res = await t.api("/v1/vms", { token });
      expect(res.status, name).toBe(401);
      expect(res.body.code, name).toBe("unauthenticated");
    }
  });

  it("refuses bad tokens with 401 and invalid bodies with 400 problem+json", async () => {
    const forged = `${user.slice(0, -4)}AAAA`;
    for (const token of [null, "nope", forged]) {
      const res = await t.api("/v1/vms", { token });
      expect(res.status).toBe(401);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
    }
    const expired = await t.mintToken({ sub: "alice", project: "alpha", roles: ["user"], expiresIn: -60 });
    expect((await t.api("/v1/vms", { token: expired })).status).toBe(401);
    const bad = await t.api("/v1/vms", {
      method: "POST",
      token: user,
      json: { name: "x", vcpus: 1, memoryMiB: 512, disk: 10 },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.errors.length).toBeGreaterThan(0);
  });
});
