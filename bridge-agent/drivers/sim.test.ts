import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type SimHostConfig, SimHostConfig as SimHostSchema } from "../config.ts";
import { RunnerPool } from "../transport/pool.ts";
import { describeDriverSuite } from "./driver.suite.ts";
import { createDriver } from "./registry.ts";
import { SimDriver } from "./sim.ts";
import { SimWorld } from "./sim-world.ts";

const settings = (over: Partial<SimHostConfig> = {}): SimHostConfig =>
  SimHostSchema.parse({ delayScale: 0.01, ...over });

function twoHosts(a: Partial<SimHostConfig> = {}, b: Partial<SimHostConfig> = {}) {
  const world = new SimWorld();
  world.addHost("h1", settings(a));
  world.addHost("h2", settings(b));
  return { world, h1: new SimDriver(world, "h1"), h2: new SimDriver(world, "h2") };
}

const spec = { vcpus: 2, memoryMiB: 1024 };
const req = (vmId: string, over: object = {}) => ({ vmId, vmName: vmId, opId: `op-${vmId}`, spec, ...over });

describeDriverSuite("sim", async () => {
  const { h1, h2 } = twoHosts();
  return {
    source: h1,
    target: h2,
    migrationTarget: { hostId: "h2", address: "sim", kind: "sim" },
    close: async () => {},
  };
});

describe("sim driver", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("refuses an overcommitted start with insufficient_resources; stopped domains hold nothing", async () => {
    const { h1 } = twoHosts({ capacity: { vcpus: 4, memoryMiB: 2048 } });
    await h1.start(req("a"));
    await h1.start(req("b"));
    await expect(h1.start(req("c"))).rejects.toMatchObject({ code: "insufficient_resources" });
    expect((await h1.inventory()).domains).toHaveLength(2); // the refused one was never defined
    await h1.shutdown("a", { timeoutMs: 1000 });
    expect((await h1.inventory()).free).toEqual({ vcpus: 2, memoryMiB: 1024 });
    await h1.start(req("c"));
    await expect(h1.start(req("a"))).rejects.toMatchObject({ code: "insufficient_resources" });
    await expect(h1.start(req("d", { spec: { vcpus: 1, memoryMiB: 4096 } }))).rejects.toMatchObject({
      code: "insufficient_resources",
    });
  });

  it("reports its running vCPUs over its CPUs as load, or the load its state folder gives it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "usher-sim-load-"));
    dirs.push(dir);
    const statePath = join(dir, "h1.json");
    const { h1 } = twoHosts({ capacity: { vcpus: 8, memoryMiB: 8192 }, statePath });
    expect((await h1.inventory()).load).toBe(0);
    await h1.start(req("a"));
    await h1.start(req("b"));
    expect((await h1.inventory()).load).toBe(0.5);
    await h1.pause("b");
    expect((await h1.inventory()).load).toBe(0.25);
    writeFileSync(`${statePath}.load`, "0.9\n");
    expect((await h1.inventory()).load).toBe(0.9);
  });

  it("knows its images: unknown ones fail with image_not_found, no image is diskless", async () => {
    const { h1 } = twoHosts({ images: ["debian-12"] });
    await expect(h1.start(req("x", { spec: { ...spec, image: "windows-11" } }))).rejects.toMatchObject({
      code: "image_not_found",
    });
    expect(await h1.start(req("y", { spec: { ...spec, image: "debian-12" } }))).toBe("running");
    expect(await h1.start(req("z"))).toBe("running");
  });

  it("refuses to migrate to a host missing the image or the capacity; the domain stays", async () => {
    const { h1, h2 } = twoHosts({}, { images: ["alpine-3.20"], capacity: { vcpus: 1, memoryMiB: 4096 } });
    const to = { hostId: "h2", address: "sim", kind: "sim" } as const;
    await h1.start(req("img", { spec: { ...spec, image: "debian-12" } }));
    await expect(h1.migrate("img", to, { live: true })).rejects.toMatchObject({ code: "image_not_found" });
    await h1.start(req("big"));
    await expect(h1.migrate("big", to, { live: true })).rejects.toMatchObject({
      code: "insufficient_resources",
    });
    expect(await h1.domainState("big")).toBe("running");
    expect(await h2.domainState("big")).toBe("absent");
    await expect(h1.migrate("big", { ...to, kind: "kvm" }, { live: true })).rejects.toMatchObject({
      code: "migration_failed",
    });
  });

  it("an offline migration freezes the guest meanwhile; an aborted one leaves it on the source", async () => {
    const { h1, h2 } = twoHosts({ delayScale: 0.2 });
    await h1.start(req("m"));
    const ctl = new AbortController();
    const to = { hostId: "h2", address: "sim", kind: "sim" } as const;
    const run = h1.migrate("m", to, { live: false, signal: ctl.signal });
    await new Promise((r) => setTimeout(r, 50));
    expect(await h1.domainState("m")).toBe("paused");
    ctl.abort();
    await expect(run).rejects.toMatchObject({ code: "aborted" });
    expect(await h1.domainState("m")).toBe("running");
    expect(await h2.domainState("m")).toBe("absent");
  });

  it("records the address and VLAN a domain's NIC was defined with, and keeps them through a migration", async () => {
    const { world, h1 } = twoHosts();
    const network = { range: "net-a", address: "10.1.0.7", prefixLength: 24, gateway: "10.1.0.1", vlan: 42 };
    await h1.start(req("n", { network }));
    expect(world.locate("n")?.domain.network).toEqual(network);
    await h1.migrate("n", { hostId: "h2", address: "sim", kind: "sim" }, { live: true });
    expect(world.locate("n")).toMatchObject({ host: { id: "h2" }, domain: { network } });
    await h1.start(req("plain"));
    expect(world.locate("plain")?.domain.network).toBeUndefined();
  });

  it("serialises operations on one vm: concurrent starts make one domain", async () => {
    const { h1 } = twoHosts();
    const states = await Promise.all([h1.start(req("c1")), h1.start(req("c1")), h1.start(req("c1"))]);
    expect(states).toEqual(["running", "running", "running"]);
    expect((await h1.inventory()).domains).toHaveLength(1);
  });

  it("a repeated reboot with the same opId is not done twice", async () => {
    const { h1 } = twoHosts({ delayScale: 0.5 });
    await h1.start(req("r"));
    await h1.reboot("r", { opId: "op-reboot" });
    const t0 = performance.now();
    expect(await h1.reboot("r", { opId: "op-reboot" })).toBe("running");
    expect(performance.now() - t0).toBeLessThan(100);
  });

  it("forces off a paused guest (it cannot answer ACPI) after the timeout", async () => {
    const { h1 } = twoHosts();
    await h1.start(req("p"));
    await h1.pause("p");
    const t0 = performance.now();
    expect(await h1.shutdown("p", { timeoutMs: 150 })).toBe("stopped");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
  });

  it("an unreachable host fails every call with host_unreachable", async () => {
    const { world, h1 } = twoHosts();
    world.setReachable("h1", false);
    await expect(h1.start(req("u"))).rejects.toMatchObject({ code: "host_unreachable" });
    await expect(h1.inventory()).rejects.toMatchObject({ code: "host_unreachable" });
    world.setReachable("h1", true);
    expect((await h1.inventory()).reachable).toBe(true);
  });

  it("keeps domains across a restart through statePath, migrations included", async () => {
    const dir = mkdtempSync(join(tmpdir(), "usher-sim-"));
    dirs.push(dir);
    const paths = { a: join(dir, "h1.json"), b: join(dir, "sub", "h2.json") };
    const first = twoHosts({ statePath: paths.a }, { statePath: paths.b });
    await first.h1.start(req("keep"));
    await first.h1.start(req("move"));
    await first.h1.pause("keep");
    await first.h1.migrate("move", { hostId: "h2", address: "sim", kind: "sim" }, { live: true });
    expect(JSON.parse(readFileSync(paths.a, "utf8"))).toMatchObject({ version: 1, hostId: "h1" });

    const again = twoHosts({ statePath: paths.a }, { statePath: paths.b });
    expect(await again.h1.domainState("keep")).toBe("paused");
    expect(await again.h1.domainState("move")).toBe("absent");
    expect(await again.h2.domainState("move")).toBe("running");
    const [before] = (await first.h1.inventory()).domains;
    const [after] = (await again.h1.inventory()).domains;
    expect(after).toEqual(before);
  });

  it("the registry builds sim drivers, and refuses kvm and xen hosts without ssh settings", () => {
    const world = new SimWorld();
    const host = { id: "s1", kind: "sim", address: "sim" } as const;
    const runners = new RunnerPool([host]);
    expect(createDriver(host, { simWorld: world, runners }).kind).toBe("sim");
    for (const kind of ["kvm", "xen"] as const) {
      expect(() => createDriver({ ...host, id: `${kind}1`, kind }, { simWorld: world, runners })).toThrow(
        expect.objectContaining({ code: "driver_unavailable" }),
      );
    }
  });
});
