/**
 * DNS end to end on the local stack (DynamoDB Local, fauxqs, API, consumers with the notifier, an
 * agent with simulated hosts) and a real BIND 9 `named` on loopback: the site config
 * (test/support/configs/dns.config.ts) runs the IP manager and the DNS plugin, the agent has the
 * nameserver and TSIG key in its own settings. A VM that starts resolves (A and PTR); destroyed, it
 * no longer does; started again, it resolves at its new address; deleted, it is gone.
 * Skips, saying why, where named is not installed or cannot run (as test/dns/update.test.ts).
 */
import { resolve } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { waitFor } from "../../bridge-agent/testing/reports.ts";
import type { Operation, Vm } from "../../shared/contracts/vm.ts";
import { startTestStack, type TestStack } from "../support/stack.ts";
import { type Named, namedSupport, REVERSE_ZONE, startNamed, ZONE } from "./named.ts";

const support = namedSupport();
if (!support.ok) console.warn(`\n*** DNS stack suite skipped: ${support.reason} ***\n`);

const SITE_CONFIG = resolve(import.meta.dirname, "../support/configs/dns.config.ts");

describe.skipIf(!support.ok)("DNS records of VMs, end to end", () => {
  let named: Named;
  let t: TestStack;
  let user: string;
  let cannotRun: string | undefined;

  beforeAll(async () => {
    try {
      named = await startNamed();
    } catch (err) {
      if (process.env.CI) throw err;
      cannotRun = err instanceof Error ? err.message : String(err);
      console.warn(`\n*** DNS stack suite skipped: named cannot run: ${cannotRun} ***\n`);
      return;
    }
    t = await startTestStack({
      siteConfig: SITE_CONFIG,
      agentSettings: {
        dns: {
          server: { address: named.address, port: named.port },
          tsig: named.updateKey,
          zone: ZONE,
          reverseZone: REVERSE_ZONE,
          ttlSeconds: 60,
          timeoutMs: 3_000,
        },
      },
    });
    user = await t.userToken("research", "rita");
  });

  beforeEach((ctx) => {
    if (cannotRun) ctx.skip(`named cannot run: ${cannotRun}`);
  });

  afterAll(async () => {
    await t?.stop();
    if (named) {
      await named.stop();
      expect(() => process.kill(named.pid, 0)).toThrow(); // ended, by its pid
    }
  });

  async function settled(res: { status: number; body: { operation: Operation } }) {
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const op = await t.waitForOperation(res.body.operation.id, user);
    expect(op.status, JSON.stringify(op.error)).toBe("succeeded");
  }
  const act = async (vmId: string, action: string) =>
    settled(await t.api(`/v1/vms/${vmId}/actions`, { token: user, json: { action } }));
  const address = async (vmId: string) =>
    (await t.api<Vm>(`/v1/vms/${vmId}`, { token: user })).body.network?.address;
  const ptrOf = (ip: string) => `${ip.split(".").reverse().join(".")}.in-addr.arpa`;

  /** Waits until `dig` answers `want` for the name (the notifier and the agent work asynchronously). */
  const digUntil = (name: string, type: string, want: string[]) =>
    waitFor(
      async () => JSON.stringify(await named.dig(name, type)) === JSON.stringify(want),
      30_000,
      `${type} ${name} to be ${JSON.stringify(want)}`,
    );

  it("registers a started VM's A and PTR records and removes them on destroy and delete", async () => {
    const host = `web-1.research.${ZONE}`;
    const created = await t.api<{ vm: Vm; operation: Operation }>("/v1/vms", {
      token: user,
      json: { name: "web-1", vcpus: 1, memoryMiB: 512 },
    });
    await settled(created);
    const vmId = created.body.vm.id;
    const first = await address(vmId);
    expect(first).toMatch(/^10\.10\.0\.\d+$/);
    await digUntil(host, "A", [first!]);
    await digUntil(ptrOf(first!), "PTR", [`${host}.`]);
    // The agent's outcome came back and was recorded by the control plane.
    expect(
      t.logs.some((l) => l.msg === "agent plugin task done" && l.plugin === "dns" && l.event === "start"),
    ).toBe(true);

    await act(vmId, "destroy");
    expect(await address(vmId)).toBeUndefined(); // the IP manager took it back
    await digUntil(host, "A", []);
    await digUntil(ptrOf(first!), "PTR", []);

    await act(vmId, "start");
    const second = await address(vmId);
    expect(second).toMatch(/^10\.10\.0\.\d+$/);
    await digUntil(host, "A", [second!]);
    await digUntil(ptrOf(second!), "PTR", [`${host}.`]);

    await settled(await t.api(`/v1/vms/${vmId}`, { method: "DELETE", token: user }));
    await digUntil(host, "A", []);
    await digUntil(ptrOf(second!), "PTR", []);
  });
});
