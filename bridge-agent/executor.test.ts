import { describe, expect, it } from "vitest";
import type { AgentCommand } from "../shared/contracts/index.ts";
import { SimHostConfig } from "./config.ts";
import { SimDriver } from "./drivers/sim.ts";
import { SimWorld } from "./drivers/sim-world.ts";
import { execute } from "./executor.ts";

function setup(delayScale = 0.01) {
  const world = new SimWorld();
  world.addHost("h1", SimHostConfig.parse({ delayScale }));
  world.addHost("h2", SimHostConfig.parse({ delayScale }));
  return { world, h1: new SimDriver(world, "h1"), h2: new SimDriver(world, "h2") };
}

const cmd = (action: AgentCommand["action"], over: Partial<AgentCommand> = {}): AgentCommand => ({
  opId: `op-${action}-${Math.random()}`,
  requestId: "req-1",
  action,
  site: "local",
  hostId: "h1",
  vmId: "vm-1",
  vmName: "web-1",
  spec: { vcpus: 1, memoryMiB: 256 },
  deadline: new Date(Date.now() + 60_000).toISOString(),
  attempt: 1,
  ...over,
});
const ctx = { guestShutdownTimeoutMs: 1_000 };

describe("execute", () => {
  it("maps every action to the driver and reports the power state after", async () => {
    const { h1 } = setup();
    const expected: [AgentCommand["action"], string][] = [
      ["start", "running"],
      ["pause", "paused"],
      ["unpause", "running"],
      ["suspend", "suspended"],
      ["resume", "running"],
      ["reboot", "running"],
      ["cycle", "running"],
      ["shutdown", "stopped"],
      ["start", "running"],
      ["destroy", "absent"],
      ["start", "running"],
      ["delete", "absent"],
    ];
    for (const [action, powerState] of expected) {
      const r = await execute(cmd(action), h1, ctx);
      expect(r, action).toMatchObject({ status: "succeeded", powerState, finalHostId: "h1", vmId: "vm-1" });
      expect(r.hypervisorMs).toBeGreaterThanOrEqual(0);
    }
  });

  it("hands a start's network (address, VLAN) to the driver", async () => {
    const { world, h1 } = setup();
    const network = { range: "net-a", address: "10.1.0.7", prefixLength: 24, vlan: 42 };
    await execute(cmd("start", { network }), h1, ctx);
    expect(world.locate("vm-1")?.domain.network).toEqual(network);
  });

  it("migrate reports the target as finalHostId and forwards progress", async () => {
    const { h1, h2 } = setup();
    await execute(cmd("start"), h1, ctx);
    const progress: number[] = [];
    const target = { hostId: "h2", address: "sim", kind: "sim" } as const;
    const r = await execute(cmd("migrate", { target }), h1, { ...ctx, onProgress: (p) => progress.push(p) });
    expect(r).toMatchObject({ status: "succeeded", powerState: "running", finalHostId: "h2" });
    expect(progress.at(-1)).toBe(100);
    expect(await h2.domainState("vm-1")).toBe("running");
  });

  it("turns driver errors into a failed result with the code and the state observed", async () => {
    const { h1 } = setup();
    await execute(cmd("start"), h1, ctx);
    await execute(cmd("shutdown"), h1, ctx);
    const r = await execute(cmd("unpause"), h1, ctx);
    expect(r).toMatchObject({ status: "failed", error: { code: "invalid_state" }, powerState: "stopped" });
    const missing = await execute(cmd("migrate"), h1, ctx);
    expect(missing).toMatchObject({ status: "failed", error: { code: "validation_failed" } });
  });

  it("refuses an action the driver has no capability for", async () => {
    const { h1 } = setup();
    const noPause = Object.assign(Object.create(h1), { capabilities: { ...h1.capabilities, pause: false } });
    const r = await execute(cmd("pause"), noPause, ctx);
    expect(r).toMatchObject({ status: "failed", error: { code: "not_supported" } });
  });

  it("fails with deadline_exceeded when the deadline passes while the driver works", async () => {
    const { h1 } = setup(1);
    const t0 = Date.now();
    const r = await execute(cmd("start", { deadline: new Date(Date.now() + 150).toISOString() }), h1, ctx);
    expect(r).toMatchObject({ status: "failed", error: { code: "deadline_exceeded" } });
    expect(Date.now() - t0).toBeLessThan(350);
  });

  it("fails with agent_stopping when the caller aborts", async () => {
    const { h1 } = setup(1);
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 50);
    const r = await execute(cmd("start"), h1, { ...ctx, signal: stop.signal });
    expect(r).toMatchObject({ status: "failed", error: { code: "agent_stopping" } });
  });
});
