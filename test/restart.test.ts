/**
 * A restart of the local stack keeps VMs and operations (DynamoDB Local persists to the data dir;
 * queue contents do not survive fauxqs, and the sweep re-sends what was queued).
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Operation, Vm } from "../shared/contracts/vm.ts";
import { startTestStack, type TestStack } from "./support/stack.ts";

let t: TestStack;

beforeAll(async () => {
  t = await startTestStack();
});
afterAll(() => t?.stop());

it("keeps VMs and operations across a restart, and goes on working", async () => {
  const token = await t.userToken("keep", "kim");
  const created = await t.api<{ vm: Vm; operation: Operation }>("/v1/vms", {
    method: "POST",
    token,
    json: { name: "keeper", vcpus: 2, memoryMiB: 512 },
  });
  const started = await t.waitForOperation(created.body.operation.id, token);
  expect(started.status).toBe("succeeded");
  const before = (await t.api<Vm>(`/v1/vms/${created.body.vm.id}`, { token })).body;
  const hostBefore = (await t.api(`/v1/hosts/${before.hostId}`)).body;

  await t.restart();

  const after = await t.api<Vm>(`/v1/vms/${created.body.vm.id}`, { token });
  expect(after.status).toBe(200);
  expect(after.body).toMatchObject({
    id: before.id,
    state: "running",
    hostId: before.hostId,
    name: "keeper",
  });
  const op = await t.api<Operation>(`/v1/operations/${started.id}`, { token });
  expect(op.body).toMatchObject({ status: "succeeded", action: "start" });
  expect((await t.api(`/v1/hosts/${before.hostId}`)).body.allocated).toEqual(hostBefore.allocated);

  // The simulated host kept its domain too, so the VM can be acted on at once.
  const shut = await t.api<{ operation: Operation }>(`/v1/vms/${before.id}/actions`, {
    method: "POST",
    token,
    json: { action: "shutdown" },
  });
  expect((await t.waitForOperation(shut.body.operation.id, token)).status).toBe("succeeded");
  const fresh = await t.api<{ operation: Operation }>("/v1/vms", {
    method: "POST",
    token,
    json: { name: "after-restart", vcpus: 1, memoryMiB: 256 },
  });
  expect((await t.waitForOperation(fresh.body.operation.id, token)).status).toBe("succeeded");
});
