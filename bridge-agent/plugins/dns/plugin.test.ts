/**
 * The DNS agent plugin's own parts: project labels, the records a task stands for, task checks, and
 * which update each event makes (with a recording updater: the real client against BIND is in
 * test/dns/agent.test.ts).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { AgentTask } from "../../../shared/contracts/index.ts";
import { silentLogger } from "../../../shared/log.ts";
import type { AgentConfig } from "../../config.ts";
import { AGENT_PLUGINS } from "../../tasks/registry.ts";
import { DnsPluginConfig } from "./config.ts";
import { DnsErrorCode } from "./errors.ts";
import { createDnsPlugin, dnsPlugin, parseDnsTask, projectLabel, recordNames, vmRecords } from "./plugin.ts";
import { type DnsUpdater, planAddVmRecords, planRemoveVmRecords, type VmRecords } from "./update.ts";

const HOST_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const cfg = DnsPluginConfig.parse({
  server: { address: "127.0.0.1", port: 5353 },
  zone: "vms.example.com",
  reverseZone: "10.10.in-addr.arpa",
  tsig: { name: "usher-agent", secretBase64: Buffer.alloc(32, 1).toString("base64") },
  ttlSeconds: 120,
});
const payload = { vmId: "vm-1", name: "web-1", project: "research", address: "10.10.0.5" };
const task = (over: Partial<AgentTask> = {}): AgentTask => ({
  taskId: "task-1",
  site: "local",
  kind: "plugin",
  plugin: "dns",
  event: "start",
  payload,
  deadline: new Date(Date.now() + 60_000).toISOString(),
  ...over,
});
const ctx = (config: Partial<AgentConfig>) => ({
  config: config as AgentConfig,
  drivers: new Map(),
  log: silentLogger,
  signal: new AbortController().signal,
});

/** An updater that records what it was asked. */
function recorder() {
  const calls: { op: "add" | "remove"; records: VmRecords }[] = [];
  let made = 0;
  const make = (): DnsUpdater => {
    made++;
    return {
      addVmRecords: async (records) => void calls.push({ op: "add", records }),
      removeVmRecords: async (records) => void calls.push({ op: "remove", records }),
    };
  };
  return { calls, make, made: () => made };
}

describe("projectLabel", () => {
  it("keeps a project that is a lower-case DNS label", () => {
    expect(projectLabel("research")).toBe("research");
    expect(projectLabel("team-a")).toBe("team-a");
  });

  it("makes any other project a label with a hash, so no two projects share one", () => {
    const upper = projectLabel("Team A");
    expect(upper).toMatch(/^team-a-[0-9a-f]{8}$/);
    expect(upper).not.toBe(projectLabel("team-a"));
    expect(upper).not.toBe(projectLabel("team_a"));
    expect(projectLabel("Team A")).toBe(upper); // stable: the removal finds what the start added
    expect(projectLabel("___")).toMatch(/^p-[0-9a-f]{8}$/);
    expect(projectLabel("x".repeat(128))).toHaveLength(63);
  });

  it("always yields a DNS label", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 128, unit: "binary" }), (p) =>
        HOST_LABEL.test(projectLabel(p)),
      ),
    );
  });
});

describe("records of a task", () => {
  it("names a VM <name>.<project>.<zone>, PTR from its address", () => {
    const r = vmRecords(cfg, payload);
    expect(r).toEqual({
      zone: "vms.example.com",
      reverseZone: "10.10.in-addr.arpa",
      name: "web-1",
      subdomain: "research",
      ipv4: "10.10.0.5",
      ttl: 120,
    });
    expect(recordNames(r)).toEqual({ host: "web-1.research.vms.example.com", ptr: "5.0.10.10.in-addr.arpa" });
  });

  it("puts that name in the updates the client sends", () => {
    const [forward, reverse] = planAddVmRecords(vmRecords(cfg, payload));
    expect(forward?.zone).toBe("vms.example.com");
    expect(forward?.updates.map((u) => u.name)).toEqual([
      "web-1.research.vms.example.com",
      "web-1.research.vms.example.com",
    ]);
    expect(reverse?.updates[1]?.rdata.toString("latin1")).toContain("research");
    const removal = planRemoveVmRecords(vmRecords(cfg, payload));
    expect(removal[0]?.updates[0]?.name).toBe("web-1.research.vms.example.com");
  });

  it("refuses a task it does not know with dns_bad_task", () => {
    expect(parseDnsTask({ event: "start", payload })).toEqual({ event: "start", payload });
    for (const bad of [
      { event: "reboot", payload },
      { event: undefined, payload },
      { event: "start", payload: { ...payload, address: "10.10.0.500" } },
      { event: "start", payload: { ...payload, name: "web.1" } },
      { event: "destroy", payload: { vmId: "vm-1" } },
    ]) {
      expect(() => parseDnsTask(bad)).toThrow(expect.objectContaining({ code: "dns_bad_task" }));
    }
  });
});

describe("the dns agent plugin", () => {
  it("is registered in AGENT_PLUGINS as dns", () => {
    expect(AGENT_PLUGINS.dns).toBe(dnsPlugin);
    expect(dnsPlugin.name).toBe("dns");
  });

  it("adds on start and removes on destroy and delete, reporting the VM id", async () => {
    const r = recorder();
    const plugin = createDnsPlugin(r.make);
    const c = ctx({ dns: cfg });
    expect(await plugin.run(task(), c)).toEqual({
      vmId: "vm-1",
      records: "added",
      name: "web-1.research.vms.example.com",
      ptr: "5.0.10.10.in-addr.arpa",
      address: "10.10.0.5",
    });
    expect(await plugin.run(task({ event: "destroy" }), c)).toMatchObject({
      vmId: "vm-1",
      records: "removed",
    });
    expect(await plugin.run(task({ event: "delete" }), c)).toMatchObject({ records: "removed" });
    expect(r.calls.map((x) => x.op)).toEqual(["add", "remove", "remove"]);
    expect(r.calls[0]?.records).toEqual(vmRecords(cfg, payload));
    expect(r.made()).toBe(1); // one client per config, not one per task
  });

  it("fails with plugin_unconfigured on an agent without dns settings, sending nothing", async () => {
    const r = recorder();
    await expect(createDnsPlugin(r.make).run(task(), ctx({}))).rejects.toMatchObject({
      code: "plugin_unconfigured",
    });
    expect(r.calls).toEqual([]);
  });

  it("refuses a name outside the reverse zone before sending anything", async () => {
    await expect(
      dnsPlugin.run(task({ payload: { ...payload, address: "192.0.2.7" } }), ctx({ dns: cfg })),
    ).rejects.toMatchObject({ code: DnsErrorCode.notZone });
  });
});
