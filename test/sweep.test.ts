/**
 * The sweep against real DynamoDB Local and fauxqs: an operation whose queue send was lost is re-sent,
 * a command an agent never acknowledged is re-sent, and operations past their deadline fail with a
 * reason. The services run in-process with a clock the test moves.
 */
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getClaim } from "../shared/services/capacity.ts";
import { createHost } from "../shared/services/hosts.ts";
import { getOpItem } from "../shared/services/operations.ts";
import { scheduleOperation } from "../shared/services/scheduling.ts";
import { sweep } from "../shared/services/sweep.ts";
import { createVm, getVmItem, requestAction } from "../shared/services/vms.ts";
import { admin, type ServiceBed, startServiceBed } from "./support/services.ts";

let bed: ServiceBed;

beforeAll(async () => {
  bed = await startServiceBed();
  await createHost(
    bed.deps(),
    { actor: "root", requestId: "req-setup" },
    {
      id: "h1",
      site: "local",
      kind: "sim",
      address: "h1.sim",
      capacity: { vcpus: 8, memoryMiB: 8192 },
    },
  );
});
afterAll(() => bed?.stop());

const ids = async (url: string) => (await bed.receive(url)).map((b) => JSON.parse(b).opId as string);

async function newVm(name: string, opsQueueUrl?: string) {
  const deps = bed.deps(opsQueueUrl ? { opsQueueUrl } : {});
  const res = await createVm(
    deps,
    { principal: admin, requestId: `req-${name}` },
    { name, vcpus: 1, memoryMiB: 256 },
  );
  return res.body as { vm: { id: string }; operation: { id: string } };
}

describe("sweep", () => {
  it("re-sends a queued operation whose send failed after it was recorded", async () => {
    const broken = bed.resources.queueUrls.ops.replace(/usher-ops$/, "no-such-queue");
    const { operation } = await newVm("lost-send", broken);
    expect((await getOpItem(bed.deps(), operation.id))?.status).toBe("queued");
    expect(await ids(bed.resources.queueUrls.ops)).not.toContain(operation.id);

    // Too soon: the sweep leaves fresh operations alone.
    await sweep(bed.deps());
    expect(await ids(bed.resources.queueUrls.ops)).not.toContain(operation.id);

    bed.clock.offsetMs = 15_000;
    const report = await sweep(bed.deps());
    expect(report.resent).toBeGreaterThanOrEqual(1);
    expect(await ids(bed.resources.queueUrls.ops)).toContain(operation.id);
    bed.clock.offsetMs = 0;
  });

  it("re-sends the command of a dispatched operation the agent never acknowledged", async () => {
    const { vm, operation } = await newVm("unacked");
    await scheduleOperation(bed.deps(), { opId: operation.id, requestId: "req-unacked" });
    const op = await getOpItem(bed.deps(), operation.id);
    expect(op?.status).toBe("dispatched");
    const agentQueue = bed.resources.queueUrls.agents.local!;
    const sent = (await bed.receive(agentQueue)).filter(
      (b) => (decodeJwt(b).cmd as { opId: string }).opId === operation.id,
    );
    expect(sent).toHaveLength(1);

    bed.clock.offsetMs = 45_000;
    const report = await sweep(bed.deps());
    expect(report.redispatched).toBeGreaterThanOrEqual(1);
    const again = (await bed.receive(agentQueue)).filter(
      (b) => (decodeJwt(b).cmd as { opId: string }).opId === operation.id,
    );
    expect(again.length).toBeGreaterThanOrEqual(2);
    expect((await getVmItem(bed.deps(), vm.id))?.state).toBe("starting");
    bed.clock.offsetMs = 0;
  });

  it("fails an operation past its deadline: before dispatch it releases nothing it did not claim", async () => {
    const { vm, operation } = await newVm("late-queued");
    bed.clock.offsetMs = 121_000;
    await sweep(bed.deps());
    const op = await getOpItem(bed.deps(), operation.id);
    expect(op?.status).toBe("failed");
    expect(op?.error?.code).toBe("deadline_exceeded");
    expect(await getVmItem(bed.deps(), vm.id)).toMatchObject({ state: "error", doneSeq: 1 });
    bed.clock.offsetMs = 0;
  });

  it("fails a dispatched operation only after deadline and grace, keeping its claim (state unknown)", async () => {
    const { vm, operation } = await newVm("late-dispatched");
    await scheduleOperation(bed.deps(), { opId: operation.id, requestId: "req-late" });
    const hostId = (await getVmItem(bed.deps(), vm.id))?.hostId;
    expect(hostId).toBe("h1");

    bed.clock.offsetMs = 125_000; // past the deadline, within the grace
    await sweep(bed.deps());
    expect((await getOpItem(bed.deps(), operation.id))?.status).toBe("dispatched");

    bed.clock.offsetMs = 155_000;
    await sweep(bed.deps());
    const op = await getOpItem(bed.deps(), operation.id);
    expect(op).toMatchObject({ status: "failed", error: { code: "deadline_exceeded" } });
    expect(await getVmItem(bed.deps(), vm.id)).toMatchObject({ state: "error", hostId: "h1" });
    // The domain may exist on the host: its capacity stays claimed until reconciled or destroyed.
    expect(await getClaim(bed.deps(), "h1", vm.id)).toMatchObject({ opId: operation.id });
    bed.clock.offsetMs = 0;
  });
});

describe("sweep and a VM's turn", () => {
  it("never strands a VM: a later operation past its deadline waits for its turn, then fails with the VM", async () => {
    const deps = bed.deps();
    const { vm, operation } = await newVm("turns");
    await scheduleOperation(deps, { opId: operation.id, requestId: "req-turns" });
    expect((await getOpItem(deps, operation.id))?.status).toBe("dispatched");
    bed.clock.offsetMs = 10_000; // op2 is submitted later, so its deadline is later too
    const second = (
      await requestAction(bed.deps(), { principal: admin, requestId: "req-turns-2" }, vm.id, {
        action: "pause",
      })
    ).body as { operation: { id: string } };

    // Past op2's deadline but within op1's grace: op1 still belongs to the agent, op2 must wait.
    bed.clock.offsetMs = 10_000 + 121_000;
    await sweep(bed.deps());
    expect((await getOpItem(deps, operation.id))?.status).toBe("dispatched");
    expect((await getOpItem(deps, second.operation.id))?.status).toBe("queued");

    // Past op1's grace: op1 fails, then op2 fails in its turn, and the VM's turn moves past both.
    bed.clock.offsetMs = 10_000 + 160_000;
    await sweep(bed.deps());
    expect((await getOpItem(deps, operation.id))?.status).toBe("failed");
    expect((await getOpItem(deps, second.operation.id))?.error?.code).toBe("deadline_exceeded");
    expect(await getVmItem(deps, vm.id)).toMatchObject({ opSeq: 2, doneSeq: 2 });

    // The VM takes work again.
    bed.clock.offsetMs = 0;
    const del = (
      await requestAction(bed.deps(), { principal: admin, requestId: "req-turns-3" }, vm.id, {
        action: "delete",
      })
    ).body as { operation: { id: string } };
    await scheduleOperation(bed.deps(), { opId: del.operation.id, requestId: "req-turns-3" });
    expect((await getOpItem(bed.deps(), del.operation.id))?.status).toBe("dispatched");
  });
});
