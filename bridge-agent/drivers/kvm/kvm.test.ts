/**
 * The KVM driver against real libvirtd: two private hosts on this machine (kvm/testing/libvirt-host.ts),
 * each its own libvirtd in its own mount namespace, with tiny diskless guests (64 MiB). The shared
 * driver suite runs in full here, migration included (host a → host b over a unix socket and
 * 127.0.0.1); the tests below add what only a real host shows: crash recovery, foreign domains,
 * hostile names, disks, capacity. Skipped, with the reason printed, where libvirtd cannot run.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { describeDriverSuite } from "../driver.suite.ts";
import * as cmd from "./commands.ts";
import { KvmDriver, type KvmDriverConfig } from "./kvm.ts";
import { domainTypeHere, type LibvirtHost, skipReason, startLibvirtHost } from "./testing/libvirt-host.ts";
import { buildDomainXml, domainUuid } from "./xml.ts";

// Starting two libvirtds (QEMU capability probing) takes seconds; a forced shutdown waits 2 s.
vi.setConfig({ hookTimeout: 120_000, testTimeout: 60_000 });

const reason = skipReason();
if (reason) console.warn(`[kvm.test] real-libvirt tests skipped: ${reason}`);

type Bed = { a: LibvirtHost; b: LibvirtHost };
const HOST_UUIDS = { a: "0a000000-0000-4000-8000-00000000000a", b: "0b000000-0000-4000-8000-00000000000b" };
/** libvirt's QEMU capabilities, kept between runs (git-ignored, like other tools' caches). */
const CAPS = join(import.meta.dirname, "../../../node_modules/.cache/usher-kvm-qemu-caps");
let root: string | undefined;
let bed: Promise<Bed> | undefined;
/** The two hosts, started once for the whole file. */
const getBed = () => {
  bed ??= (async () => {
    root = mkdtempSync(join(tmpdir(), "usher-kvm-"));
    // One after the other: the second reuses the QEMU capabilities the first probed (or found).
    const a = await startLibvirtHost("kvm-a", join(root, "a"), {
      hostUuid: HOST_UUIDS.a,
      capsCacheDir: CAPS,
    });
    try {
      const b = await startLibvirtHost("kvm-b", join(root, "b"), {
        hostUuid: HOST_UUIDS.b,
        capsCacheDir: CAPS,
      });
      return { a, b };
    } catch (err) {
      await a.stop();
      throw err;
    }
  })();
  return bed;
};

afterAll(async () => {
  const hosts = await bed?.catch(() => undefined);
  if (hosts) await Promise.all([hosts.a.stop(), hosts.b.stop()]);
  if (root) rmSync(root, { recursive: true, force: true });
});

/** A driver for host `self` of the bed, with the other host as its migration peer. */
function driverFor(b: Bed, self: "a" | "b", over: Partial<KvmDriverConfig> = {}) {
  const me = b[self];
  const other = self === "a" ? b.b : b.a;
  const runner = me.runner();
  const driver = new KvmDriver({
    hostId: me.id,
    runner,
    domainType: domainTypeHere(),
    imagesDir: me.imagesDir,
    shutdownPollMs: 100,
    peers: (id) => (id === other.id ? other.runner() : undefined),
    migrationUri: (t) => {
      if (t.hostId !== other.id) throw new Error(`unknown host ${t.hostId}`);
      return { desturi: other.socketUri, migrateuri: "tcp://127.0.0.1" };
    },
    ...over,
  });
  return { driver, runner };
}

if (reason) {
  describe.skip(`KvmDriver on real libvirtd (${reason})`, () => {
    it("needs root, libvirtd and qemu", () => {});
  });
} else {
  describeDriverSuite("kvm (private libvirtd)", async () => {
    const b = await getBed();
    return {
      source: driverFor(b, "a").driver,
      target: driverFor(b, "b").driver,
      migrationTarget: { hostId: b.b.id, address: "127.0.0.1", kind: "kvm" },
      close: async () => {}, // the bed is stopped once, after every test of this file
    };
  });

  describe("KvmDriver on real libvirtd", () => {
    let b: Bed;
    let a: ReturnType<typeof driverFor>;
    const spec = { vcpus: 1, memoryMiB: 64 };
    const newReq = (over: object = {}) => ({
      vmId: `vm-${randomUUID()}`,
      vmName: "t",
      opId: `op-${randomUUID()}`,
      spec,
      ...over,
    });
    const virsh = async (...args: string[]) => {
      const r = await b.a.runner().run(cmd.virsh("qemu:///system", ...args));
      return r;
    };

    beforeAll(async () => {
      b = await getBed();
      a = driverFor(b, "a");
    });
    afterAll(async () => {
      await a?.driver.close();
    });

    it("a redelivered start after the agent died between define and start runs the defined domain", async () => {
      const req = newReq();
      const xml = buildDomainXml({ ...req, uuid: domainUuid(req.vmId), domainType: domainTypeHere() });
      const def = await b.a.runner().run(cmd.define("qemu:///system"), { stdin: xml });
      expect(def.code).toBe(0);
      expect(await a.driver.domainState(req.vmId)).toBe("stopped");
      const t0 = performance.now();
      expect(await a.driver.start(req)).toBe("running");
      console.info(`[kvm.test] start of a defined domain: ${Math.round(performance.now() - t0)} ms`);
      const mine = (await a.driver.inventory()).domains.filter((d) => d.vmId === req.vmId);
      expect(mine.map((d) => d.uuid)).toEqual([domainUuid(req.vmId)]);
      const t1 = performance.now();
      expect(await a.driver.destroy(req.vmId)).toBe("absent");
      console.info(`[kvm.test] destroy of a running domain: ${Math.round(performance.now() - t1)} ms`);
    });

    it("never takes a foreign domain named like Usher's for the vm", async () => {
      const vmId = `vm-${randomUUID()}`;
      const foreign = `<domain type="${domainTypeHere()}"><name>usher-${vmId}</name><memory unit="MiB">64</memory><os><type arch="x86_64" machine="pc">hvm</type></os></domain>`;
      expect((await b.a.runner().run(cmd.define("qemu:///system"), { stdin: foreign })).code).toBe(0);
      try {
        await expect(a.driver.start({ ...newReq(), vmId })).rejects.toMatchObject({ code: "foreign_domain" });
        await expect(a.driver.pause(vmId)).rejects.toMatchObject({ code: "foreign_domain" });
      } finally {
        const uuid = (await virsh("domuuid", `usher-${vmId}`)).stdout.trim();
        await virsh("undefine", uuid);
      }
    });

    it("starts the vm's own domain defined under another UUID, rather than defining a second", async () => {
      // start() looks up the UUID it derives from the vmId and defines when none has it; a domain
      // of the same name with another UUID (defined by an operator, say) makes the define fail, and
      // the lookup by name then finds it.
      const req = newReq();
      const other = randomUUID();
      const xml = buildDomainXml({ ...req, uuid: other, domainType: domainTypeHere() });
      expect((await b.a.runner().run(cmd.define("qemu:///system"), { stdin: xml })).code).toBe(0);
      try {
        // The VM has an address and this host no bridge for it: a new domain could not be made, but
        // this one exists and is started all the same.
        const network = { range: "lab", address: "10.9.0.5", prefixLength: 24 };
        await expect(a.driver.start({ ...newReq(), network })).rejects.toMatchObject({
          code: "not_supported",
        });
        expect(await a.driver.start({ ...req, network })).toBe("running");
        const mine = (await a.driver.inventory()).domains.filter((d) => d.vmId === req.vmId);
        expect(mine.map((d) => [d.uuid, d.powerState])).toEqual([[other, "running"]]);
      } finally {
        await a.driver.destroy(req.vmId);
      }
      expect((await virsh("domuuid", `usher-${req.vmId}`)).code).not.toBe(0);
    });

    it("a start that defines the domain but cannot boot it fails as virsh start, leaving it defined", async () => {
      // A bridge that does not exist passes `virsh define` and fails `virsh start`: the one round trip
      // that does both must say which half failed.
      const broken = driverFor(b, "a", { nics: [{ bridge: "usher-nobr0" }] });
      const req = newReq();
      try {
        const err = await broken.driver.start(req).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toMatchObject({
          message: expect.stringMatching(/^virsh start on host .* failed: .*usher-nobr0/),
        });
        expect(await a.driver.domainState(req.vmId)).toBe("stopped");
      } finally {
        await a.driver.destroy(req.vmId);
        await broken.driver.close();
      }
      expect(await a.driver.domainState(req.vmId)).toBe("absent");
    });

    it("hostile VM names stay data: metadata only, reported back verbatim", async () => {
      const names = ["3", "--help", "$(reboot)", "<x>&", "a'b\"c", "line\nbreak"];
      const reqs = names.map((vmName) => newReq({ vmName }));
      const before = a.runner.calls.length;
      expect(await Promise.all(reqs.map((r) => a.driver.start(r)))).toEqual(names.map(() => "running"));
      const domains = (await a.driver.inventory()).domains;
      for (const r of reqs) expect(domains.find((d) => d.vmId === r.vmId)?.name).toBe(r.vmName);
      // No name ever reaches an argv (the XML goes through stdin).
      const args = a.runner.calls.slice(before).flat();
      for (const n of names) expect(args).not.toContain(n);
      await Promise.all(reqs.map((r) => a.driver.destroy(r.vmId)));
    });

    it("a start the host cannot hold fails with insufficient_resources and defines nothing", async () => {
      const req = newReq({ spec: { vcpus: 1, memoryMiB: 8 * 1024 * 1024 } });
      await expect(a.driver.start(req)).rejects.toMatchObject({ code: "insufficient_resources" });
      expect(await a.driver.domainState(req.vmId)).toBe("absent");
    });

    it("a vm with an image gets a qcow2 overlay, removed with the domain; unknown images fail", async () => {
      const base = `${b.a.imagesDir}/tiny.qcow2`;
      await b.a.runner().run(cmd.mkdirP(b.a.imagesDir));
      expect((await b.a.runner().run(["qemu-img", "create", "-f", "qcow2", base, "16M"])).code).toBe(0);
      const missing = newReq({ spec: { ...spec, image: "no-such-image" } });
      await expect(a.driver.start(missing)).rejects.toMatchObject({ code: "image_not_found" });
      expect(await a.driver.domainState(missing.vmId)).toBe("absent");

      const req = newReq({ spec: { ...spec, image: "tiny" } });
      expect(await a.driver.start(req)).toBe("running");
      const overlay = `${b.a.imagesDir}/overlays/usher-${req.vmId}.qcow2`;
      const info = await b.a.runner().run(["qemu-img", "info", "-U", "--output=json", overlay]);
      expect(JSON.parse(info.stdout)).toMatchObject({ format: "qcow2", "backing-filename": base });
      expect(await a.driver.destroy(req.vmId)).toBe("absent");
      expect((await b.a.runner().run(["test", "-e", overlay])).code).toBe(1);
    });

    it("migrates a vm with a disk: overlay made on the target, copied, removed here", async () => {
      const base = (h: LibvirtHost) => `${h.imagesDir}/tiny2.qcow2`;
      for (const h of [b.a, b.b]) {
        await h.runner().run(cmd.mkdirP(h.imagesDir));
        await h.runner().run(["qemu-img", "create", "-f", "qcow2", base(h), "16M"]);
      }
      const req = newReq({ spec: { ...spec, image: "tiny2" } });
      const bDriver = driverFor(b, "b").driver;
      try {
        expect(await a.driver.start(req)).toBe("running");
        const target = { hostId: b.b.id, address: "127.0.0.1", kind: "kvm" } as const;
        expect(await a.driver.migrate(req.vmId, target, { live: true })).toBe("running");
        const overlay = `${b.a.imagesDir}/overlays/usher-${req.vmId}.qcow2`;
        expect((await b.a.runner().run(["test", "-e", overlay])).code).toBe(1);
        expect((await b.b.runner().run(["test", "-e", overlay])).code).toBe(0);
        expect(await bDriver.domainState(req.vmId)).toBe("running");
      } finally {
        await a.driver.destroy(req.vmId);
        await bDriver.destroy(req.vmId);
        await bDriver.close();
      }
    });

    it("a migration still running from before a crash is waited for, not started twice", async () => {
      const req = newReq({ spec: { vcpus: 1, memoryMiB: 256 } });
      const uuid = domainUuid(req.vmId);
      const bDriver = driverFor(b, "b").driver;
      try {
        expect(await a.driver.start(req)).toBe("running");
        // What an agent that died mid-migration leaves: a `virsh migrate` that goes on (throttled
        // to 1 MiB/s here so that it is still running when the command is delivered again).
        const orphan = b.a.runner().run([
          ...cmd.migrate("qemu:///system", uuid, {
            desturi: b.b.socketUri,
            migrateuri: "tcp://127.0.0.1",
            live: true,
          }),
          "--bandwidth",
          "1",
        ]);
        for (let i = 0; i < 100; i++) {
          if ((await virsh("domjobinfo", uuid)).stdout.includes("Outgoing migration")) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        const progress: number[] = [];
        const target = { hostId: b.b.id, address: "127.0.0.1", kind: "kvm" } as const;
        const state = await a.driver.migrate(req.vmId, target, {
          live: true,
          onProgress: (p) => progress.push(p),
        });
        expect(state).toBe("running");
        expect((await orphan).code).toBe(0); // the one migration there was
        expect(progress.at(-1)).toBe(100);
        expect(await a.driver.domainState(req.vmId)).toBe("absent");
        expect(await bDriver.domainState(req.vmId)).toBe("running");
      } finally {
        await a.driver.destroy(req.vmId);
        await bDriver.destroy(req.vmId);
        await bDriver.close();
      }
    });

    it("a paused guest is forced off when the shutdown timeout passes", async () => {
      const req = newReq();
      await a.driver.start(req);
      await a.driver.pause(req.vmId);
      const t0 = performance.now();
      expect(await a.driver.shutdown(req.vmId, { timeoutMs: 300 })).toBe("stopped");
      expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
      await a.driver.destroy(req.vmId);
    });

    it("an aborted operation fails with aborted; a closed driver with host_unreachable", async () => {
      const ctl = new AbortController();
      ctl.abort();
      await expect(a.driver.start(newReq(), { signal: ctl.signal })).rejects.toMatchObject({
        code: "aborted",
      });
      const other = driverFor(b, "a").driver;
      await other.close();
      await expect(other.inventory()).rejects.toMatchObject({ code: "host_unreachable" });
    });

    it("concurrent starts of one vm make one domain", async () => {
      const req = newReq();
      const states = await Promise.all([a.driver.start(req), a.driver.start(req), a.driver.start(req)]);
      expect(states).toEqual(["running", "running", "running"]);
      expect((await a.driver.inventory()).domains.filter((d) => d.vmId === req.vmId)).toHaveLength(1);
      await a.driver.destroy(req.vmId);
    });
  });
}
