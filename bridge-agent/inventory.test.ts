/**
 * Inventory in parts: a site too large for one queue message goes out in parts that each fit once
 * signed, every host whole and none lost; hosts are listed a bounded number at a time.
 */
import { describe, expect, it } from "vitest";
import type { AgentInventory, DomainReport, HostInventory } from "../shared/contracts/index.ts";
import { generateEd25519Jwks, importEd25519, signReport, verifyReport } from "../shared/signing/index.ts";
import { SimHostConfig } from "./config.ts";
import type { HypervisorDriver } from "./drivers/driver.ts";
import { SimDriver } from "./drivers/sim.ts";
import { SimWorld } from "./drivers/sim-world.ts";
import {
  INVENTORY_MESSAGE_MAX_BYTES,
  inCompletionOrder,
  inventoryParts,
  splitInventory,
} from "./inventory.ts";

const ids = { agentId: "agent-big", site: "big" };

/** A domain as a sim or kvm host reports it: UUIDs and ULID-like ids, as long as the real ones. */
function domain(host: number, i: number): DomainReport {
  const n = String(host * 100 + i).padStart(12, "0");
  return {
    uuid: `6f0c2a9e-1b7d-4c2a-9e5b-${n}`,
    vmId: `vm_01JABCDEFGHJKMNPQR${n}`,
    opId: `op_01JABCDEFGHJKMNPQR${n}`,
    name: `usher-vm_01JABCDEFGHJKMNPQR${n}`,
    powerState: i % 7 === 0 ? "stopped" : "running",
    vcpus: 2,
    memoryMiB: 4096,
  };
}

const host = (h: number, domains: number): HostInventory => ({
  hostId: `site-${String(h).padStart(5, "0")}`,
  reachable: true,
  domains: Array.from({ length: domains }, (_, i) => domain(h, i)),
  free: { vcpus: 12, memoryMiB: 90_000 },
  load: 0.62,
});

/** A driver that answers with `inv` after `delayMs`, counting how many of its kind run at once. */
function fakeDriver(
  inv: HostInventory,
  counter: { now: number; peak: number; calls: number },
  delayMs = 1,
): HypervisorDriver {
  return {
    kind: "kvm",
    hostId: inv.hostId,
    async inventory() {
      counter.calls++;
      counter.peak = Math.max(counter.peak, ++counter.now);
      await new Promise((r) => setTimeout(r, delayMs));
      counter.now--;
      return inv;
    },
  } as unknown as HypervisorDriver;
}

describe("splitInventory", () => {
  it("splits 10,000 hosts and 100,000 domains into signed parts under 256 KiB, losing nothing", async () => {
    const inv: AgentInventory = {
      type: "inventory",
      ...ids,
      at: new Date().toISOString(),
      hosts: Array.from({ length: 10_000 }, (_, h) => host(h, 10)),
    };
    expect(JSON.stringify(inv).length).toBeGreaterThan(15_000_000); // far beyond one message

    const parts = splitInventory(inv, INVENTORY_MESSAGE_MAX_BYTES);
    const keys = await generateEd25519Jwks("agent-big");
    const signer = await importEd25519(keys.privateJwk);
    const publicKey = (await importEd25519(keys.publicJwk)).key;
    const back: HostInventory[] = [];
    for (const [i, part] of parts.entries()) {
      const token = await signReport(part, ids.site, signer);
      expect(Buffer.byteLength(token)).toBeLessThanOrEqual(INVENTORY_MESSAGE_MAX_BYTES);
      // Parts are not much smaller than they may be either (so there are not needlessly many).
      if (i < parts.length - 1)
        expect(Buffer.byteLength(token)).toBeGreaterThan(0.9 * INVENTORY_MESSAGE_MAX_BYTES);
      expect(part).toMatchObject({ type: "inventory", ...ids, at: inv.at, part: i + 1 });
      expect(part.last).toBe(i === parts.length - 1 ? true : undefined);
      // What the control plane reads back (verifying all ~120 parts would only take longer).
      const { report } = i % 20 === 0 ? await verifyReport(token, () => publicKey) : { report: part };
      back.push(...(report as AgentInventory).hosts);
    }
    expect(parts.length).toBeGreaterThan(60);
    expect(back).toEqual(inv.hosts);
  }, 60_000);

  it("sends a host too large for any part alone, and a small inventory in one part", () => {
    const big = host(1, 2_000);
    const parts = splitInventory(
      { type: "inventory", ...ids, at: "2026-01-01T00:00:00.000Z", hosts: [host(0, 3), big, host(2, 3)] },
      INVENTORY_MESSAGE_MAX_BYTES,
    );
    expect(parts.map((p) => p.hosts.map((h) => h.hostId))).toEqual([
      ["site-00000"],
      ["site-00001"],
      ["site-00002"],
    ]);
    const one = splitInventory(
      { type: "inventory", ...ids, at: "2026-01-01T00:00:00.000Z", hosts: [host(0, 3), host(1, 3)] },
      INVENTORY_MESSAGE_MAX_BYTES,
    );
    expect(one).toHaveLength(1);
    expect(one[0]).toMatchObject({ part: 1, last: true });
  });
});

describe("inventoryParts", () => {
  it("lists at most `concurrency` hosts at once and yields parts before every host is listed", async () => {
    const counter = { now: 0, peak: 0, calls: 0 };
    const drivers = Array.from({ length: 2_000 }, (_, h) => fakeDriver(host(h, 10), counter));
    const parts: AgentInventory[] = [];
    let callsAtFirstPart = 0;
    for await (const part of inventoryParts(drivers, ids, {
      timeoutMs: 1_000,
      concurrency: 16,
      messageMaxBytes: INVENTORY_MESSAGE_MAX_BYTES,
    })) {
      if (parts.length === 0) callsAtFirstPart = counter.calls;
      parts.push(part);
    }
    expect(counter.peak).toBe(16);
    expect(callsAtFirstPart).toBeLessThan(2_000 / 4);
    const hostIds = parts.flatMap((p) => p.hosts.map((h) => h.hostId));
    expect(new Set(hostIds).size).toBe(2_000);
    expect(hostIds).toHaveLength(2_000);
    expect(new Set(parts.map((p) => p.at)).size).toBe(1);
    expect(parts.at(-1)?.last).toBe(true);
  });

  it("reports a host that hangs or fails as unreachable without holding the others up", async () => {
    const counter = { now: 0, peak: 0, calls: 0 };
    const hang = { ...fakeDriver(host(0, 1), counter), inventory: () => new Promise<never>(() => {}) };
    const broken = {
      ...fakeDriver(host(1, 1), counter),
      inventory: () => Promise.reject(new Error("virsh: connection reset")),
    };
    const rest = Array.from({ length: 50 }, (_, h) => fakeDriver(host(h + 2, 1), counter));
    const started = Date.now();
    const hosts: HostInventory[] = [];
    for await (const part of inventoryParts([hang, broken, ...rest] as HypervisorDriver[], ids, {
      timeoutMs: 300,
      concurrency: 4,
      messageMaxBytes: INVENTORY_MESSAGE_MAX_BYTES,
    }))
      hosts.push(...part.hosts);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(hosts).toHaveLength(52);
    expect(hosts.find((h) => h.hostId === "site-00000")).toMatchObject({
      reachable: false,
      domains: [],
      error: { code: "host_unreachable" },
    });
    expect(hosts.find((h) => h.hostId === "site-00001")).toMatchObject({ reachable: false, domains: [] });
    // The hung host held one slot until its timeout; the other 50 went through the other three.
    expect(hosts.findIndex((h) => h.hostId === "site-00000")).toBe(51);
  });

  it("lists 10,000 sim hosts of 10 domains each in a few seconds", async () => {
    const world = new SimWorld();
    const settings = SimHostConfig.parse({ capacity: { vcpus: 64, memoryMiB: 262_144 } });
    const drivers: SimDriver[] = [];
    for (let h = 0; h < 10_000; h++) {
      const id = `sim-${h}`;
      const simHost = world.addHost(id, settings);
      for (let i = 0; i < 10; i++) {
        const d = domain(h, i);
        simHost.domains.set(d.uuid, {
          uuid: d.uuid,
          name: d.name,
          vmId: d.vmId!,
          opId: d.opId!,
          vcpus: 2,
          memoryMiB: 4096,
          state: "running",
          createdAt: "2026-01-01T00:00:00.000Z",
        });
      }
      drivers.push(new SimDriver(world, id));
    }
    const started = performance.now();
    let hosts = 0;
    let domains = 0;
    let parts = 0;
    for await (const part of inventoryParts(drivers, ids, {
      timeoutMs: 10_000,
      concurrency: 32,
      messageMaxBytes: INVENTORY_MESSAGE_MAX_BYTES,
    })) {
      parts++;
      hosts += part.hosts.length;
      for (const h of part.hosts) domains += h.domains.length;
    }
    expect({ hosts, domains }).toEqual({ hosts: 10_000, domains: 100_000 });
    expect(parts).toBeGreaterThan(60);
    expect(performance.now() - started).toBeLessThan(10_000);
  }, 60_000);
});

describe("inCompletionOrder", () => {
  it("yields results as they complete, not in input order", async () => {
    const delays = [50, 5, 20];
    const out: number[] = [];
    for await (const d of inCompletionOrder(delays, 3, async (ms) => {
      await new Promise((r) => setTimeout(r, ms));
      return ms;
    }))
      out.push(d);
    expect(out).toEqual([5, 20, 50]);
  });
});
