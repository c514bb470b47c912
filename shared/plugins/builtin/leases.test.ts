/**
 * The leases plugin's decisions that need no table: its options, the `start_request` verdicts, and
 * what it adds to claim and release transactions. Storage and the sweep are tested against DynamoDB
 * Local in test/leases.test.ts.
 */
import { describe, expect, it } from "vitest";
import type { Principal } from "../../auth/principal.ts";
import { silentLogger } from "../../log.ts";
import { rulesFor } from "../../services/leases.ts";
import type { OpItem, VmItem } from "../../store/items.ts";
import { Plugins } from "../host.ts";
import type { ActionRequest, PluginContext } from "../types.ts";
import { leases, startVerdict } from "./leases.ts";

const options = {
  maxSeconds: 3600,
  warnBeforeSeconds: 60,
  onExpiry: "shutdown" as const,
  projects: { ci: { defaultSeconds: 600, onExpiry: "destroy" as const } },
};
const now = new Date("2030-01-01T00:00:00.000Z");
const principal: Principal = { subject: "alice", project: "team", roles: ["user"] };
const spec = { vcpus: 1, memoryMiB: 256 };

const create = (args: Record<string, unknown>, project = "team"): ActionRequest => ({
  action: "start",
  principal,
  requestId: "req-1",
  project,
  site: "local",
  spec,
  args,
  create: { name: "a" },
});

const vmItem = (over: Partial<VmItem> = {}): VmItem => ({
  type: "vm",
  id: "vm-1",
  name: "a",
  project: "team",
  owner: "alice",
  site: "local",
  spec,
  labels: {},
  state: "stopped",
  opSeq: 2,
  doneSeq: 2,
  version: 3,
  createdAt: now.toISOString(),
  updatedAt: now.toISOString(),
  ...over,
});

// The claim and release hooks read only the clock and the table's name: these stand in for the rest.
const ctx = {
  deps: { now: () => now, db: { table: "usher" } },
  log: silentLogger,
} as unknown as PluginContext;

describe("leases options", () => {
  it("refuses bad options when the config is built, naming each problem", () => {
    expect(() => leases({ ...options, maxSeconds: 0 })).toThrow(/maxSeconds/);
    expect(() => leases({ ...options, defaultSeconds: 7200 })).toThrow(/defaultSeconds/);
    expect(() => leases({ ...options, onExpiry: "explode" as "destroy" })).toThrow(/onExpiry/);
    expect(() => leases({ ...options, projects: { ci: { warnBeforeSeconds: -1 } } })).toThrow(
      /projects\.ci: warnBeforeSeconds/,
    );
    expect(() => new Plugins({ plugins: [leases(options)] })).not.toThrow();
  });

  it("a project's rules override the site's field by field", () => {
    expect(rulesFor(options, "ci")).toEqual({
      maxSeconds: 3600,
      warnBeforeSeconds: 60,
      onExpiry: "destroy",
      defaultSeconds: 600,
    });
    expect(rulesFor(options, "team")).toEqual({
      maxSeconds: 3600,
      warnBeforeSeconds: 60,
      onExpiry: "shutdown",
    });
  });
});

describe("start_request", () => {
  const team = rulesFor(options, "team");
  const ci = rulesFor(options, "ci");

  it("vetoes a lease longer than maxSeconds, with the limit", () => {
    expect(startVerdict(team, create({ leaseSeconds: 3601 }), now)).toEqual({
      veto: "a lease may last at most 3600 seconds",
      details: { leaseSeconds: 3601, maxSeconds: 3600 },
    });
    expect(startVerdict(team, create({ leaseSeconds: 1.5 }), now)).toMatchObject({
      veto: expect.any(String),
    });
  });

  it("keeps the asked lease, else applies the project's default, else none", () => {
    expect(startVerdict(team, create({ leaseSeconds: 120 }), now)).toEqual({ args: { leaseSeconds: 120 } });
    expect(startVerdict(ci, create({}, "ci"), now)).toEqual({ args: { leaseSeconds: 600 } });
    expect(startVerdict(team, create({}), now)).toBeUndefined();
  });

  it("refuses to start a VM whose lease has run out, until it is renewed", () => {
    const vm = vmItem({ hostId: "h1", leaseExpiresAt: "2029-12-31T23:59:59.000Z" });
    const req: ActionRequest = { ...create({}), create: undefined, vm };
    expect(startVerdict(team, req, now)).toMatchObject({ veto: expect.stringContaining("lease expired") });
    const renewed = { ...req, vm: { ...vm, leaseExpiresAt: "2030-01-01T01:00:00.000Z" } };
    expect(startVerdict(team, renewed, now)).toBeUndefined();
  });

  it("gives the default lease to an existing VM being placed afresh", () => {
    const req: ActionRequest = { ...create({}, "ci"), create: undefined, vm: vmItem({ state: "destroyed" }) };
    expect(startVerdict(ci, req, now)).toEqual({ args: { leaseSeconds: 600 } });
  });
});

describe("claim and release contributions", () => {
  const plugin = leases(options);
  const op = { id: "op-1", args: { leaseSeconds: 90 } } as unknown as OpItem;
  const host = {} as never;

  it("a home-host claim writes the lease and the VM's copy of its expiry", async () => {
    const c = await plugin.hooks.claim?.(ctx, { op, field: "hostId", placements: [{ vm: vmItem(), host }] });
    expect(c?.vmSet).toEqual({ "vm-1": { leaseExpiresAt: "2030-01-01T00:01:30.000Z" } });
    expect(c?.items[0]?.Put?.Item).toMatchObject({
      pk: "LEASE#vm-1",
      gsi2pk: "LEASES",
      gsi2sk: "2030-01-01T00:01:30.000Z#vm-1",
      leaseExpiresAt: "2030-01-01T00:01:30.000Z",
      project: "team",
    });
  });

  it("a migration target's claim, a start without a lease, or a VM that has one already adds nothing", async () => {
    const placements = [{ vm: vmItem(), host }];
    expect(await plugin.hooks.claim?.(ctx, { op, field: "migrationHostId", placements })).toBeUndefined();
    const bare = { ...op, args: {} };
    expect(await plugin.hooks.claim?.(ctx, { op: bare, field: "hostId", placements })).toBeUndefined();
    const leased = [{ vm: vmItem({ leaseExpiresAt: "2030-01-01T00:00:30.000Z" }), host }];
    expect(await plugin.hooks.claim?.(ctx, { op, field: "hostId", placements: leased })).toBeUndefined();
  });

  it("a destroy or delete deletes the lease of each VM that has one; other releases keep it", async () => {
    const leased = vmItem({ leaseExpiresAt: now.toISOString() });
    const destroy = { id: "op-2", action: "destroy" } as OpItem;
    const c = await plugin.hooks.release?.(ctx, { op: destroy, vms: [leased, vmItem({ id: "vm-2" })] });
    expect(c?.items.map((i) => i.Delete?.Key)).toEqual([{ pk: "LEASE#vm-1", sk: "LEASE" }]);
    expect(c?.vmRemove).toEqual({ "vm-1": ["leaseExpiresAt"] });
    expect(await plugin.hooks.release?.(ctx, { op: destroy, vms: [vmItem()] })).toBeUndefined();
    // A failed start, an evacuation, a VM found gone by reconciliation: the VM lives on, so does its lease.
    const start = { id: "op-3", action: "start" } as OpItem;
    expect(await plugin.hooks.release?.(ctx, { op: start, vms: [leased] })).toBeUndefined();
    expect(await plugin.hooks.release?.(ctx, { vms: [leased] })).toBeUndefined();
  });
});
