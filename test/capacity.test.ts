/**
 * Capacity under concurrency, on the real stack: 40 starts at once onto hosts that fit 25, with two
 * scheduling consumer processes racing. No host may end over capacity and every operation must end,
 * succeeded or failed with a no-capacity reason that says why.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../shared/contracts/host.ts";
import type { Operation, Vm } from "../shared/contracts/vm.ts";
import { startTestStack, type TestStack } from "./support/stack.ts";

let t: TestStack;

beforeAll(async () => {
  t = await startTestStack({
    schedulerProcesses: 2,
    sites: [
      {
        name: "local",
        // 5 + 5 + 5 + 6 + 4 = 25 one-vCPU VMs; memory is never the limit here.
        hosts: [
          { id: "cap-1", vcpus: 5, memoryMiB: 8192 },
          { id: "cap-2", vcpus: 5, memoryMiB: 8192 },
          { id: "cap-3", vcpus: 5, memoryMiB: 8192 },
          { id: "cap-4", vcpus: 6, memoryMiB: 8192 },
          { id: "cap-5", vcpus: 4, memoryMiB: 8192 },
        ],
      },
    ],
  });
});
afterAll(() => t?.stop());

it("never over-commits a host with 40 concurrent starts for 25 slots and two schedulers", async () => {
  const token = await t.userToken("load", "loader");
  const created = await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      t.api<{ vm: Vm; operation: Operation }>("/v1/vms", {
        method: "POST",
        token,
        json: { name: `load-${i}`, vcpus: 1, memoryMiB: 256 },
      }),
    ),
  );
  expect(created.map((r) => r.status)).toEqual(Array(40).fill(202));
  const ops = await Promise.all(created.map((r) => t.waitForOperation(r.body.operation.id, token, 90_000)));

  const succeeded = ops.filter((o) => o.status === "succeeded");
  const failed = ops.filter((o) => o.status === "failed");
  expect(succeeded.length + failed.length).toBe(40);
  expect(succeeded).toHaveLength(25);
  for (const op of failed) {
    expect(op.error?.code).toBe("no_capacity");
    expect(op.error?.message).toMatch(/no host fits among 5 considered: vcpus rejected 5/);
  }

  const hosts = (await t.api<{ items: Host[] }>("/v1/hosts")).body.items;
  for (const h of hosts) {
    expect(h.allocated.vcpus, h.id).toBeLessThanOrEqual(h.limits.vcpus);
    expect(h.allocated.vcpus, h.id).toBe(h.limits.vcpus);
  }
  expect(hosts.reduce((n, h) => n + h.allocated.vcpus, 0)).toBe(25);

  const vms = (await t.api<{ items: Vm[] }>("/v1/vms?limit=200", { token })).body.items;
  const running = vms.filter((v) => v.state === "running");
  expect(running).toHaveLength(25);
  const perHost = new Map<string, number>();
  for (const v of running) perHost.set(v.hostId!, (perHost.get(v.hostId!) ?? 0) + 1);
  for (const h of hosts) expect(perHost.get(h.id) ?? 0, h.id).toBe(h.limits.vcpus);
  expect(vms.filter((v) => v.state === "error").every((v) => v.hostId === null)).toBe(true);

  // Both scheduler processes did real work.
  const schedulers = new Set(t.logs.filter((l) => l.msg === "capacity claimed").map((l) => l.source));
  expect(schedulers.size).toBe(2);
});
