/**
 * The simulated hypervisors' shared world: every sim host of one agent lives in one `SimWorld`, so a
 * migration can move a domain from one host to another. A host with a `statePath` keeps its domains
 * in a JSON file, written after each change and read when the host is added, as a real host keeps
 * its domains across an agent restart.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import { VmNetwork } from "../../shared/contracts/index.ts";
import type { SimHostConfig } from "../config.ts";

export const SimPowerState = z.enum(["running", "paused", "suspended", "stopped"]);
export type SimPowerState = z.infer<typeof SimPowerState>;

/** One simulated domain, as a libvirt domain with Usher's metadata. */
export const SimDomain = z.object({
  uuid: z.string(),
  name: z.string(),
  /** Usher's VM id (metadata): how drivers find the domain. */
  vmId: z.string(),
  /** The operation that defined the domain. */
  opId: z.string(),
  /** The last operation that changed it: a redelivered reboot or cycle is not done twice. */
  lastOpId: z.string().optional(),
  vcpus: z.number().int(),
  memoryMiB: z.number().int(),
  image: z.string().optional(),
  /** The address and VLAN the VM's NIC was defined with (IP manager), as a real driver configures it. */
  network: VmNetwork.optional(),
  state: SimPowerState,
  createdAt: z.string(),
});
export type SimDomain = z.infer<typeof SimDomain>;

const StateFile = z.object({
  version: z.literal(1),
  hostId: z.string(),
  domains: z.array(SimDomain),
  /** Set by a fence: the simulated host is off. */
  poweredOff: z.boolean().optional(),
});

/** Running and paused domains hold their vCPUs and memory; stopped and suspended ones hold none. */
const holdsResources = (d: SimDomain) => d.state === "running" || d.state === "paused";

export class SimHost {
  readonly id: string;
  readonly settings: SimHostConfig;
  /** Domains by UUID. */
  readonly domains = new Map<string, SimDomain>();
  /** False simulates a host that cannot be reached: every call fails with `host_unreachable`. */
  private reachableSwitch = true;
  /** Powered off by a fence (its simulated BMC): unreachable, every domain stopped, until powerOn(). */
  poweredOff = false;

  constructor(id: string, settings: SimHostConfig) {
    this.id = id;
    this.settings = settings;
  }

  /** Reachable unless switched off, powered off, or its `<statePath>.unreachable` file exists. */
  get reachable(): boolean {
    if (!this.reachableSwitch || this.poweredOff) return false;
    const path = this.settings.statePath;
    return !(path && existsSync(`${path}.unreachable`));
  }

  set reachable(on: boolean) {
    this.reachableSwitch = on;
  }

  /**
   * What a BMC's power-off does, whether or not the host can be reached over the network: the host
   * stops, and so does every guest on it (their definitions stay, shut off). Idempotent.
   */
  powerOff(): void {
    for (const d of this.domains.values())
      if (d.state === "running" || d.state === "paused") d.state = "stopped";
    this.poweredOff = true;
    this.save();
  }

  /** Powers the host back on; its domains stay shut off (no autostart). */
  powerOn(): void {
    this.poweredOff = false;
    this.save();
  }

  findByVmId(vmId: string): SimDomain | undefined {
    for (const d of this.domains.values()) if (d.vmId === vmId) return d;
    return undefined;
  }

  free(): { vcpus: number; memoryMiB: number } {
    let vcpus = this.settings.capacity.vcpus;
    let memoryMiB = this.settings.capacity.memoryMiB;
    for (const d of this.domains.values()) {
      if (!holdsResources(d)) continue;
      vcpus -= d.vcpus;
      memoryMiB -= d.memoryMiB;
    }
    return { vcpus, memoryMiB };
  }

  /**
   * The host's CPU load as a fraction of its CPUs: its running guests' vCPUs over its CPUs, as if each
   * guest kept its vCPUs busy; a number in `<statePath>.load` overrides it (tests give a host a load
   * from outside the agent, as they make one unreachable).
   */
  cpuLoad(): number {
    const path = this.settings.statePath;
    if (path && existsSync(`${path}.load`)) {
      const forced = Number(readFileSync(`${path}.load`, "utf8").trim());
      if (Number.isFinite(forced) && forced >= 0) return forced;
    }
    let busy = 0;
    for (const d of this.domains.values()) if (d.state === "running") busy += d.vcpus;
    return busy / this.settings.capacity.vcpus;
  }

  /** Writes the host's domains to its statePath (atomically: temp file, then rename). */
  save(): void {
    const path = this.settings.statePath;
    if (!path) return;
    mkdirSync(dirname(path), { recursive: true });
    const body = {
      version: 1,
      hostId: this.id,
      domains: [...this.domains.values()],
      ...(this.poweredOff ? { poweredOff: true } : {}),
    };
    writeFileSync(`${path}.tmp`, `${JSON.stringify(body, null, 2)}\n`);
    renameSync(`${path}.tmp`, path);
  }

  load(): void {
    const path = this.settings.statePath;
    if (!path) return;
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    const parsed = StateFile.safeParse(JSON.parse(text));
    if (!parsed.success) throw new Error(`sim state file ${path} is not valid: ${parsed.error.message}`);
    for (const d of parsed.data.domains) this.domains.set(d.uuid, d);
    this.poweredOff = parsed.data.poweredOff ?? false;
  }
}

export class SimWorld {
  private readonly hosts = new Map<string, SimHost>();
  private readonly locks = new Map<string, Promise<void>>();

  /** Adds a host, loading its domains from its statePath. */
  addHost(id: string, settings: SimHostConfig): SimHost {
    if (this.hosts.has(id)) throw new Error(`sim host ${id} already exists in this world`);
    const host = new SimHost(id, settings);
    host.load();
    this.hosts.set(id, host);
    return host;
  }

  host(id: string): SimHost | undefined {
    return this.hosts.get(id);
  }

  /** Where the domain of `vmId` is, on any host of the world. */
  locate(vmId: string): { host: SimHost; domain: SimDomain } | undefined {
    for (const host of this.hosts.values()) {
      const domain = host.findByVmId(vmId);
      if (domain) return { host, domain };
    }
    return undefined;
  }

  /** Makes a host (un)reachable, for tests of failure handling. */
  setReachable(hostId: string, reachable: boolean): void {
    const host = this.hosts.get(hostId);
    if (!host) throw new Error(`no sim host ${hostId}`);
    host.reachable = reachable;
  }

  /** Runs `fn` alone for this vmId, as libvirt's per-domain job lock does: concurrent ops queue up. */
  async withLock<T>(vmId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(vmId) ?? Promise.resolve();
    let release = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const mine = prev.then(() => gate);
    this.locks.set(vmId, mine);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(vmId) === mine) this.locks.delete(vmId);
    }
  }
}
