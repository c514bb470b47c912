/**
 * The Xen driver. Xen cannot run on these machines (no Xen hypervisor), so these tests drive the real
 * XenDriver, through a real LocalRunner, against an `xl` stand-in (testing/xl-standin.ts) that
 * reproduces real xl's output formats and exit codes; only `xl` is stood in (mkdir, tee, stat, grep,
 * qemu-img are the real tools).
 */
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { LocalRunner } from "../../transport/local.ts";
import { describeDriverSuite } from "../driver.suite.ts";
import type { StartRequest } from "../driver.ts";
import { parseConfigMeta } from "./config.ts";
import { makeStandinHosts, type StandinHost, type StandinHosts } from "./testing/hosts.ts";
import { XenDriver } from "./xen.ts";

describeDriverSuite("xen (xl stand-in)", async () => {
  const s = makeStandinHosts();
  return {
    source: s.host("xen-1").driver,
    target: s.host("xen-2").driver,
    migrationTarget: s.target("xen-2"),
    close: () => s.close(),
  };
});

describe("xen driver (xl stand-in)", () => {
  let s: StandinHosts;
  let h1: StandinHost;
  let h2: StandinHost;
  const made: string[] = [];
  const spec = { vcpus: 1, memoryMiB: 64 };
  const req = (over: Partial<StartRequest> = {}): StartRequest => {
    const vmId = over.vmId ?? `vm-${randomUUID().slice(0, 8)}`;
    made.push(vmId);
    return { vmId, vmName: `n-${vmId}`, opId: `op-${randomUUID().slice(0, 8)}`, spec, ...over };
  };
  const xlList = async (h: StandinHost) => (await h.runner.run(["xl", "list"])).stdout;
  const xlNames = async (h: StandinHost) => (await xlList(h)).split("\n").map((l) => l.split(/\s+/)[0]);
  const quick = { timeoutMs: 200 }; // diskless guests have no OS: shutdown is forced after this

  beforeAll(() => {
    s = makeStandinHosts();
    h1 = s.host("xen-1");
    h2 = s.host("xen-2");
  });
  afterEach(async () => {
    for (const vmId of made.splice(0)) {
      await h1.driver.destroy(vmId);
      await h2.driver.destroy(vmId);
    }
  });
  afterAll(() => s?.close());

  it("writes the config once, with Usher's record, and starts from it again", async () => {
    const r = req();
    await h1.driver.start(r);
    const cfgPath = join(h1.stateDir, "xen", `${r.vmId}.cfg`);
    const first = readFileSync(cfgPath, "utf8");
    expect(first).toContain(`name = "usher-${r.vmId}"`);
    expect(parseConfigMeta(first)).toMatchObject({ vmId: r.vmId, opId: r.opId, vmName: r.vmName, vcpus: 1 });
    await h1.driver.shutdown(r.vmId, quick);
    expect(await h1.driver.domainState(r.vmId)).toBe("stopped");
    expect(await h1.driver.start({ ...r, opId: "op-redelivered" })).toBe("running");
    expect(readFileSync(cfgPath, "utf8")).toBe(first);
    const [dom] = (await h1.driver.inventory()).domains.filter((d) => d.vmId === r.vmId);
    expect(dom).toMatchObject({ opId: r.opId, name: r.vmName, uuid: parseConfigMeta(first)?.uuid });
  });

  it("keeps a hostile VM name as data; refuses hostile vmIds before running anything", async () => {
    const r = req({ vmId: "3", vmName: 'a"b\n$(reboot) --help' });
    expect(await h1.driver.start(r)).toBe("running");
    expect(await xlList(h1)).toMatch(/^usher-3 +\d+ +64 +1 /m); // a name, not domain id 3
    const [dom] = (await h1.driver.inventory()).domains.filter((d) => d.vmId === "3");
    expect(dom?.name).toBe(r.vmName);
    const before = await xlNames(h1);
    for (const vmId of ["--help", "$(reboot)", 'a"b', "../../etc", "a b"]) {
      await expect(h1.driver.start({ ...r, vmId }), vmId).rejects.toMatchObject({ code: "xen_unsafe_value" });
      await expect(h1.driver.destroy(vmId), vmId).rejects.toMatchObject({ code: "xen_unsafe_value" });
    }
    expect(await xlNames(h1)).toEqual(before);
    expect(readdirSync(join(h1.stateDir, "xen")).sort()).toEqual(["3.cfg"]);
  });

  it("suspends to a managed save that resume, and start, restore", async () => {
    const r = req();
    await h1.driver.start(r);
    const save = join(h1.stateDir, "xen", `${r.vmId}.save`);
    expect(await h1.driver.suspend(r.vmId)).toBe("suspended");
    expect(existsSync(save)).toBe(true);
    expect(existsSync(`${save}.tmp`)).toBe(false);
    expect(await xlList(h1)).not.toContain(`usher-${r.vmId}`);
    const [dom] = (await h1.driver.inventory()).domains.filter((d) => d.vmId === r.vmId);
    expect(dom).toMatchObject({ powerState: "suspended", opId: r.opId, vcpus: 1, memoryMiB: 64 });
    expect(await h1.driver.resume(r.vmId)).toBe("running");
    expect(existsSync(save)).toBe(false);
    await h1.driver.suspend(r.vmId);
    expect(await h1.driver.start(r)).toBe("running"); // a start resumes a suspended VM
    expect(existsSync(save)).toBe(false);
  });

  it("pauses once (Xen counts pauses) and unpauses fully, even after pauses by others", async () => {
    const r = req();
    await h1.driver.start(r);
    await h1.driver.pause(r.vmId);
    await h1.driver.pause(r.vmId);
    await h1.runner.run(["xl", "unpause", `usher-${r.vmId}`]); // one unpause undoes one pause
    expect(await h1.driver.domainState(r.vmId)).toBe("running");
    await h1.runner.run(["xl", "pause", `usher-${r.vmId}`]);
    await h1.runner.run(["xl", "pause", `usher-${r.vmId}`]);
    expect(await h1.driver.unpause(r.vmId)).toBe("running");
    expect(await h1.driver.domainState(r.vmId)).toBe("running");
  });

  it("reboots through xl: the domain comes back with a new domain id", async () => {
    const r = req();
    await h1.driver.start(r);
    const domid = async () => (await h1.runner.run(["xl", "domid", `usher-${r.vmId}`])).stdout.trim();
    const before = await domid();
    expect(await h1.driver.reboot(r.vmId)).toBe("running");
    expect(await domid()).not.toBe(before);
  });

  it("shuts a guest with an OS down on ACPI; forces a paused one off after the timeout", async () => {
    const base = join(h1.stateDir, "images", "base", "debian-12.qcow2");
    mkdirSync(dirname(base), { recursive: true });
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", base, "16M"]);
    const withOs = req({ spec: { ...spec, image: "debian-12" } });
    expect(await h1.driver.start(withOs)).toBe("running");
    expect(existsSync(join(h1.stateDir, "images", `${withOs.vmId}.qcow2`))).toBe(true); // the overlay
    let t0 = performance.now();
    expect(await h1.driver.shutdown(withOs.vmId, { timeoutMs: 10_000 })).toBe("stopped");
    expect(performance.now() - t0).toBeLessThan(5_000); // the guest answered; nothing was forced

    const paused = req();
    await h1.driver.start(paused);
    await h1.driver.pause(paused.vmId);
    t0 = performance.now();
    expect(await h1.driver.shutdown(paused.vmId, { timeoutMs: 300 })).toBe("stopped");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
  });

  it("refuses an unknown image with image_not_found, defining nothing", async () => {
    const r = req({ spec: { ...spec, image: "windows-11" } });
    await expect(h1.driver.start(r)).rejects.toMatchObject({ code: "image_not_found" });
    expect(await h1.driver.domainState(r.vmId)).toBe("absent");
  });

  it("migrates with xl's progress, moves the config along, and keeps a paused guest paused", async () => {
    const r = req();
    await h1.driver.start(r);
    await h1.driver.pause(r.vmId);
    const progress: number[] = [];
    const state = await h1.driver.migrate(r.vmId, s.target("xen-2"), {
      live: true,
      onProgress: (p) => progress.push(p),
    });
    expect(state).toBe("paused");
    expect(progress.length).toBeGreaterThan(5);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(progress.at(-1)).toBe(100);
    expect(existsSync(join(h1.stateDir, "xen", `${r.vmId}.cfg`))).toBe(false);
    expect(existsSync(join(h2.stateDir, "xen", `${r.vmId}.cfg`))).toBe(true);
    const [dom] = (await h2.driver.inventory()).domains.filter((d) => d.vmId === r.vmId);
    expect(dom).toMatchObject({ powerState: "paused", opId: r.opId, name: r.vmName });
    expect(await h2.driver.unpause(r.vmId)).toBe("running");
    await h2.driver.shutdown(r.vmId, quick);
    expect(await h2.driver.domainState(r.vmId)).toBe("stopped"); // its config came along
  });

  it("moves a stopped VM as its config alone", async () => {
    const r = req();
    await h1.driver.start(r);
    await h1.driver.shutdown(r.vmId, quick);
    expect(await h1.driver.migrate(r.vmId, s.target("xen-2"), { live: true })).toBe("stopped");
    expect(await h1.driver.domainState(r.vmId)).toBe("absent");
    expect(await h2.driver.start(r)).toBe("running");
  });

  it("fails with host_unreachable when ssh cannot reach the target; the guest stays", async () => {
    const r = req();
    await h1.driver.start(r);
    const nowhere = { hostId: "xen-9", address: "xen-9.nowhere.test", kind: "xen" } as const;
    await expect(h1.driver.migrate(r.vmId, nowhere, { live: false })).rejects.toMatchObject({
      code: "host_unreachable",
    });
    expect(await h1.driver.domainState(r.vmId)).toBe("running"); // unfrozen after the failed offline try
    await expect(
      h1.driver.migrate(r.vmId, { ...nowhere, address: "-oProxyCommand=reboot" }, { live: true }),
    ).rejects.toMatchObject({ code: "migration_failed" });
    await expect(
      h1.driver.migrate(r.vmId, { ...s.target("xen-2"), kind: "kvm" }, { live: true }),
    ).rejects.toMatchObject({ code: "migration_failed" });
  });

  it("lists domains Usher did not make, without a vmId, and counts what they hold", async () => {
    const cfg = join(s.dir, "legacy.cfg");
    writeFileSync(cfg, 'name = "legacy-web"\ntype = "hvm"\nmemory = 256\nvcpus = 2\n');
    const before = (await h1.driver.inventory()).free;
    expect((await h1.runner.run(["xl", "create", cfg])).code).toBe(0);
    const inv = await h1.driver.inventory();
    expect(inv.domains.find((d) => d.name === "legacy-web")).toMatchObject({ vcpus: 2, memoryMiB: 256 });
    expect(inv.domains.find((d) => d.name === "legacy-web")?.vmId).toBeUndefined();
    expect(inv.free).toEqual({ vcpus: (before?.vcpus ?? 0) - 2, memoryMiB: (before?.memoryMiB ?? 0) - 256 });
    await h1.runner.run(["xl", "destroy", "legacy-web"]);
  });

  it("makes one domain of concurrent starts of one vm", async () => {
    const r = req();
    expect(await Promise.all([h1.driver.start(r), h1.driver.start(r), h1.driver.start(r)])).toEqual([
      "running",
      "running",
      "running",
    ]);
    expect((await h1.driver.inventory()).domains.filter((d) => d.vmId === r.vmId)).toHaveLength(1);
  });
});

describe("xen driver on hosts with less room, or slower", () => {
  it("refuses a start beyond the host's CPUs or memory with insufficient_resources, defining nothing", async () => {
    const s = makeStandinHosts({
      ids: ["small"],
      env: { XL_STANDIN_NR_CPUS: "2", XL_STANDIN_TOTAL_MIB: "2048", XL_STANDIN_DOM0_MIB: "1024" },
    });
    try {
      const d = s.host("small").driver;
      const r = { vmId: "vm-big", vmName: "big", opId: "op-1" };
      await expect(d.start({ ...r, spec: { vcpus: 3, memoryMiB: 64 } })).rejects.toMatchObject({
        code: "insufficient_resources",
      });
      await expect(d.start({ ...r, spec: { vcpus: 1, memoryMiB: 1500 } })).rejects.toMatchObject({
        code: "insufficient_resources",
      });
      expect(await d.domainState("vm-big")).toBe("absent");
      expect((await d.inventory()).free).toEqual({ vcpus: 2, memoryMiB: 1024 });
    } finally {
      await s.close();
    }
  });

  it("an offline migration freezes the guest; an aborted one leaves it running on the source", async () => {
    const s = makeStandinHosts({ env: { XL_STANDIN_STEP_MS: "120" } });
    try {
      const [d1, d2] = [s.host("xen-1").driver, s.host("xen-2").driver];
      await d1.start({ vmId: "vm-m", vmName: "m", opId: "op-1", spec: { vcpus: 1, memoryMiB: 64 } });
      const ctl = new AbortController();
      const run = d1.migrate("vm-m", s.target("xen-2"), { live: false, signal: ctl.signal });
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(await d1.domainState("vm-m")).toBe("paused"); // frozen while its memory is copied
      ctl.abort();
      await expect(run).rejects.toMatchObject({ code: "aborted" });
      expect(await d1.domainState("vm-m")).toBe("running");
      expect(await d2.domainState("vm-m")).toBe("absent");
      expect((await s.host("xen-2").runner.run(["xl", "list"])).stdout).not.toContain("--incoming");
    } finally {
      await s.close();
    }
  });

  it("a host without xl is unreachable; so is a closed driver", async () => {
    const d = new XenDriver({
      hostId: "bare",
      runner: new LocalRunner({ hostId: "bare", env: { PATH: "/nonexistent" } }),
      stateDir: "/tmp/usher-xen-bare",
    });
    await expect(d.inventory()).rejects.toMatchObject({ code: "host_unreachable" });
    await d.close();
    await d.close();
    await expect(d.domainState("vm-1")).rejects.toMatchObject({ code: "host_unreachable" });
    await expect(
      d.start({ vmId: "vm-1", vmName: "x", opId: "o", spec: { vcpus: 1, memoryMiB: 64 } }),
    ).rejects.toMatchObject({ code: "host_unreachable" });
  });
});
