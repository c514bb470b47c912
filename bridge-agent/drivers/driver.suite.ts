/**
 * The lifecycle contract every HypervisorDriver must keep, as one shared suite (hono's
 * `common.case.test.ts` habit). `sim.test.ts` runs it against the simulated driver; the kvm and xen
 * drivers will run it against real hosts. Specs are diskless and tiny so real test hosts can run them.
 */
import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { MigrationTarget, VmSpec } from "../../shared/contracts/index.ts";
import type { HypervisorDriver } from "./driver.ts";

export type SuiteHosts = {
  /** The host most tests use. */
  source: HypervisorDriver;
  /** A second host of the same kind, the migration target. */
  target: HypervisorDriver;
  /** How `source` addresses `target` in a migration. */
  migrationTarget: MigrationTarget;
  /** Ends whatever makeHosts started. */
  close(): Promise<void>;
};

const SPEC: VmSpec = { vcpus: 1, memoryMiB: 64 };
/** A diskless test guest has no OS to answer ACPI: shutdown is forced after this. */
const SHUTDOWN = { timeoutMs: 2_000 };

/** Runs the driver contract against the hosts `makeHosts` gives. */
export function describeDriverSuite(name: string, makeHosts: () => Promise<SuiteHosts>): void {
  describe(`HypervisorDriver contract: ${name}`, () => {
    let hosts: SuiteHosts;
    let src: HypervisorDriver;
    const made: string[] = [];

    const newVm = () => {
      const vmId = `vm-${randomUUID()}`;
      made.push(vmId);
      return { vmId, vmName: `suite-${vmId.slice(3, 11)}`, opId: `op-${randomUUID()}`, spec: SPEC };
    };
    const started = async () => {
      const req = newVm();
      expect(await src.start(req)).toBe("running");
      return req.vmId;
    };
    const domainsOf = async (d: HypervisorDriver, vmId: string) =>
      (await d.inventory()).domains.filter((x) => x.vmId === vmId);

    beforeAll(async () => {
      hosts = await makeHosts();
      src = hosts.source;
    });
    afterEach(async () => {
      for (const vmId of made.splice(0)) {
        await hosts.source.destroy(vmId);
        await hosts.target.destroy(vmId);
      }
    });
    afterAll(async () => {
      await hosts?.source.close();
      await hosts?.target.close();
      await hosts?.source.close(); // close is safe twice
      await hosts?.close();
    });

    it("start defines and runs a domain that inventory lists with its vmId", async () => {
      const req = newVm();
      expect(await src.start(req)).toBe("running");
      expect(await src.domainState(req.vmId)).toBe("running");
      const [dom, ...more] = await domainsOf(src, req.vmId);
      expect(more).toHaveLength(0);
      expect(dom).toMatchObject({
        vmId: req.vmId,
        opId: req.opId,
        powerState: "running",
        vcpus: 1,
        memoryMiB: 64,
      });
      expect(dom?.uuid).toMatch(/^[0-9a-f-]{36}$/);
    });

    it("start again finds the existing domain instead of defining a second", async () => {
      const req = newVm();
      await src.start(req);
      const [first] = await domainsOf(src, req.vmId);
      expect(await src.start({ ...req, opId: `op-${randomUUID()}` })).toBe("running");
      await src.shutdown(req.vmId, SHUTDOWN);
      expect(await src.start(req)).toBe("running");
      const doms = await domainsOf(src, req.vmId);
      expect(doms.map((d) => d.uuid)).toEqual([first?.uuid]);
    });

    it("shutdown stops a running domain; repeating it is success", async () => {
      const vmId = await started();
      expect(await src.shutdown(vmId, SHUTDOWN)).toBe("stopped");
      expect(await src.shutdown(vmId, SHUTDOWN)).toBe("stopped");
      expect(await src.domainState(vmId)).toBe("stopped");
    });

    it("destroy removes the domain; destroying an absent one is success", async () => {
      const vmId = await started();
      expect(await src.destroy(vmId)).toBe("absent");
      expect(await src.destroy(vmId)).toBe("absent");
      expect(await src.domainState(vmId)).toBe("absent");
      expect(await domainsOf(src, vmId)).toHaveLength(0);
    });

    it("reboot keeps a running domain running; a stopped one is invalid_state", async (ctx) => {
      if (!src.capabilities.reboot) ctx.skip();
      const vmId = await started();
      expect(await src.reboot(vmId)).toBe("running");
      await src.shutdown(vmId, SHUTDOWN);
      await expect(src.reboot(vmId)).rejects.toMatchObject({ code: "invalid_state" });
    });

    it("cycle brings a running or a stopped domain to running", async () => {
      const vmId = await started();
      expect(await src.cycle(vmId)).toBe("running");
      await src.shutdown(vmId, SHUTDOWN);
      expect(await src.cycle(vmId)).toBe("running");
    });

    it("pause and unpause, each idempotent; unpause of a stopped domain is invalid_state", async (ctx) => {
      if (!src.capabilities.pause) ctx.skip();
      const vmId = await started();
      expect(await src.pause(vmId)).toBe("paused");
      expect(await src.pause(vmId)).toBe("paused");
      expect(await src.domainState(vmId)).toBe("paused");
      expect(await src.unpause(vmId)).toBe("running");
      expect(await src.unpause(vmId)).toBe("running");
      await src.shutdown(vmId, SHUTDOWN);
      await expect(src.unpause(vmId)).rejects.toMatchObject({ code: "invalid_state" });
      await expect(src.pause(vmId)).rejects.toMatchObject({ code: "invalid_state" });
    });

    it("suspend and resume, each idempotent; resume of a stopped domain is invalid_state", async (ctx) => {
      if (!src.capabilities.suspend) ctx.skip();
      const vmId = await started();
      expect(await src.suspend(vmId)).toBe("suspended");
      expect(await src.suspend(vmId)).toBe("suspended");
      expect(await src.resume(vmId)).toBe("running");
      expect(await src.resume(vmId)).toBe("running");
      await src.shutdown(vmId, SHUTDOWN);
      await expect(src.resume(vmId)).rejects.toMatchObject({ code: "invalid_state" });
    });

    it("operations on a vm with no domain fail with domain_not_found", async () => {
      const { vmId } = newVm();
      for (const op of [() => src.pause(vmId), () => src.reboot(vmId), () => src.shutdown(vmId, SHUTDOWN)]) {
        await expect(op()).rejects.toMatchObject({ code: "domain_not_found" });
      }
      expect(await src.domainState(vmId)).toBe("absent");
    });

    it("migrate moves the domain to the target, reporting progress; repeating it is success", async () => {
      const vmId = await started();
      const progress: number[] = [];
      const live = src.capabilities.liveMigration;
      const state = await src.migrate(vmId, hosts.migrationTarget, {
        live,
        onProgress: (p) => progress.push(p),
      });
      expect(state).toBe("running");
      expect(await src.domainState(vmId)).toBe("absent");
      expect(await hosts.target.domainState(vmId)).toBe("running");
      expect(await domainsOf(hosts.target, vmId)).toHaveLength(1);
      expect(progress.at(-1)).toBe(100);
      expect(progress).toEqual([...progress].sort((a, b) => a - b));
      expect(await src.migrate(vmId, hosts.migrationTarget, { live })).toBe("running");
    });

    it("inventory reports free capacity, less what running domains hold", async () => {
      const before = (await src.inventory()).free;
      expect(before).toBeDefined();
      await started();
      const after = await src.inventory();
      expect(after).toMatchObject({ hostId: src.hostId, reachable: true });
      expect(after.free?.vcpus).toBe((before?.vcpus ?? 0) - SPEC.vcpus);
      expect(after.free?.memoryMiB).toBe((before?.memoryMiB ?? 0) - SPEC.memoryMiB);
    });

    it("inventory reports the host's CPU load, by its second reading at the latest", async () => {
      await src.inventory();
      await new Promise((r) => setTimeout(r, 200));
      const { load } = await src.inventory();
      expect(typeof load).toBe("number");
      expect(load).toBeGreaterThanOrEqual(0);
      expect(Number.isFinite(load)).toBe(true);
    });
  });
}
