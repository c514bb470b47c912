/**
 * The Xen driver: `xl` on one host's dom0 through a `CommandRunner`, behaving as the sim driver
 * documents (drivers/sim.ts). A VM's domain is `usher-<vmId>`, defined by `<stateDir>/xen/<vmId>.cfg`
 * (config.ts). xl keeps no inactive domains, so the power state comes from three places: a domain in
 * `xl list` (running, paused), else a managed save `<vmId>.save` (suspended), else the config (stopped),
 * else absent. Every operation is idempotent and serialised per vmId on this driver.
 */
import type { HostInventory, MigrationTarget, PowerState } from "../../../shared/contracts/index.ts";
import { sleep } from "../../sleep.ts";
import type { CommandRunner } from "../../transport/runner.ts";
import type {
  DriverCapabilities,
  HypervisorDriver,
  MigrateOptions,
  OpOptions,
  ShutdownOptions,
  StartRequest,
} from "../driver.ts";
import { DriverError, DriverErrorCode as E } from "../errors.ts";
import { fileCmd, xl } from "./commands.ts";
import {
  assertStateDir,
  assertVmId,
  DEFAULT_STATE_DIR,
  type XenGuestType,
  type XenNetwork,
} from "./config.ts";
import { XenHost } from "./host.ts";
import { inventoryOf } from "./inventory.ts";
import { create, type DefineOptions, define, restore, unpauseFully } from "./lifecycle.ts";
import { CpuTimeLoad } from "./load.ts";
import { migrate } from "./migrate.ts";
import { powerStateOfFlags } from "./parse.ts";

/** How to reach another Xen host: its runner, and its `stateDir` when not the default. */
export type XenPeer = { runner: CommandRunner; stateDir?: string };

export type XenDriverOptions = {
  /** The host's id in the control plane. */
  hostId: string;
  /** Runs commands on the host's dom0 (SSH in production). */
  runner: CommandRunner;
  /** Where configs, managed saves (`xen/`) and disk images (`images/`) live on the host. */
  stateDir?: string;
  /** Guest type of new domains (default hvm); pvh needs `kernel`. */
  guestType?: XenGuestType;
  kernel?: string;
  /** A NIC for new domains, when the host has a bridge for guests. */
  network?: XenNetwork;
  /**
   * Another Xen host of this agent, by host id: lets a migration check the target's capacity and move
   * the VM's config there (a stopped VM moves as its config alone). Without it a running VM still
   * migrates, but its config is left behind (and dropped).
   */
  peers?: (hostId: string) => XenPeer | undefined;
  /** How often shutdown and reboot look at the domain while waiting (default 250). */
  pollMs?: number;
  /** Limit for one ordinary command (default 60 s). */
  commandTimeoutMs?: number;
  /** Limit for one `xl migrate` (default 30 min). */
  migrateTimeoutMs?: number;
  /** How long a reboot may take to show the domain running again (default 30 s). */
  rebootWaitMs?: number;
};

export class XenDriver implements HypervisorDriver {
  readonly kind = "xen" as const;
  readonly hostId: string;
  readonly capabilities: DriverCapabilities = {
    liveMigration: true,
    pause: true,
    suspend: true, // xl save / xl restore
    reboot: true,
  };
  readonly host: XenHost;
  private readonly opts: XenDriverOptions;
  private readonly defineOptions: DefineOptions;
  private readonly locks = new Map<string, Promise<unknown>>();
  /** CPU time at the previous inventory, for the host's load. */
  private readonly load = new CpuTimeLoad();
  private closed = false;

  constructor(opts: XenDriverOptions) {
    this.opts = opts;
    this.hostId = opts.hostId;
    const stateDir = assertStateDir(opts.stateDir ?? DEFAULT_STATE_DIR);
    this.host = new XenHost(opts.hostId, opts.runner, stateDir, opts.commandTimeoutMs ?? 60_000);
    this.defineOptions = {
      ...(opts.guestType ? { guestType: opts.guestType } : {}),
      ...(opts.kernel ? { kernel: opts.kernel } : {}),
      ...(opts.network ? { network: opts.network } : {}),
    };
  }

  start(req: StartRequest, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(req.vmId, opts, async () => {
      const { vmId } = req;
      const probe = await this.host.probe(vmId, opts);
      if (probe.row) {
        const state = powerStateOfFlags(probe.row.flags);
        if (state === "running") return "running";
        if (state === "paused") return unpauseFully(this.host, vmId, opts);
        await this.host.destroyDomain(vmId, opts); // shut down, not yet cleaned up: start afresh
      }
      const meta = probe.hasCfg ? await this.host.readMeta(vmId, opts) : undefined;
      if (probe.hasSave) return restore(this.host, vmId, meta, opts);
      if (meta) await this.host.ensureCapacity(meta, opts);
      else await define(this.host, req, this.defineOptions, opts);
      return create(this.host, vmId, opts);
    });
  }

  shutdown(vmId: string, opts: ShutdownOptions): Promise<PowerState> {
    return this.op(vmId, opts, async () => {
      const probe = await this.host.probe(vmId, opts);
      if (!probe.row) {
        if (probe.hasSave) throw this.invalid(vmId, "shutdown", "suspended");
        if (probe.hasCfg) return "stopped";
        throw this.notFound(vmId);
      }
      if (powerStateOfFlags(probe.row.flags) !== "stopped") {
        // A refused request (no PV drivers, no ACPI) is no different from a guest that ignores it.
        await this.host.run(xl.shutdown(vmId), opts);
        const deadline = performance.now() + opts.timeoutMs;
        while (performance.now() < deadline) {
          await this.sleep(Math.min(this.pollMs, deadline - performance.now()), opts);
          const row = await this.host.domain(vmId, opts);
          if (!row || powerStateOfFlags(row.flags) === "stopped") break;
        }
      }
      await this.host.destroyDomain(vmId, opts); // forced off, or the shut-down domain cleaned up
      return probe.hasCfg ? "stopped" : "absent";
    });
  }

  destroy(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async () => {
      await this.host.destroyDomain(vmId, opts);
      const p = this.host.paths(vmId);
      // The disk overlay stays: destroying a VM's definition is not deleting its data.
      await this.host.remove([p.cfg, p.cfgTmp, p.save, p.saveTmp], opts);
      return "absent";
    });
  }

  reboot(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async () => {
      const probe = await this.host.probe(vmId, opts);
      const state = XenHost.stateOf(probe);
      if (state === "absent") throw this.notFound(vmId);
      if (state !== "running") throw this.invalid(vmId, "reboot", state);
      await this.host.ok(xl.reboot(vmId), opts);
      // With on_reboot="restart" xl tears the domain down and builds it again: wait until it is back.
      const deadline = performance.now() + (this.opts.rebootWaitMs ?? 30_000);
      for (;;) {
        const row = await this.host.domain(vmId, opts);
        if (row && powerStateOfFlags(row.flags) === "running") return "running";
        if (performance.now() >= deadline) return XenHost.stateOf({ ...probe, ...(row ? { row } : {}) });
        await this.sleep(this.pollMs, opts);
      }
    });
  }

  cycle(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async () => {
      const probe = await this.host.probe(vmId, opts);
      if (XenHost.stateOf(probe) === "absent") throw this.notFound(vmId);
      const meta = probe.hasCfg ? await this.host.readMeta(vmId, opts) : undefined;
      // Without its config the domain could be forced off but never started again.
      if (!meta) throw this.invalid(vmId, "cycle", "without a config on this host");
      if (probe.row) await this.host.destroyDomain(vmId, opts);
      const p = this.host.paths(vmId);
      if (probe.hasSave) await this.host.remove([p.save, p.saveTmp], opts); // a managed save is discarded
      await this.host.ensureCapacity(meta, opts);
      return create(this.host, vmId, opts);
    });
  }

  pause(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async () => {
      const state = XenHost.stateOf(await this.host.probe(vmId, opts));
      if (state === "paused") return "paused"; // never twice: Xen counts pauses
      if (state === "absent") throw this.notFound(vmId);
      if (state !== "running") throw this.invalid(vmId, "pause", state);
      await this.host.ok(xl.pause(vmId), opts);
      return "paused";
    });
  }

  unpause(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async () => {
      const state = XenHost.stateOf(await this.host.probe(vmId, opts));
      if (state === "running") return "running";
      if (state === "absent") throw this.notFound(vmId);
      if (state !== "paused") throw this.invalid(vmId, "unpause", state);
      return unpauseFully(this.host, vmId, opts);
    });
  }

  suspend(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async () => {
      const state = XenHost.stateOf(await this.host.probe(vmId, opts));
      if (state === "suspended") return "suspended";
      if (state === "absent") throw this.notFound(vmId);
      if (state !== "running" && state !== "paused") throw this.invalid(vmId, "suspend", state);
      const p = this.host.paths(vmId);
      await this.host.ok(fileCmd.mkdir(p.dir), opts);
      // Saved under a temporary name, renamed once complete: a save file always holds a whole save.
      try {
        await this.host.ok(xl.save(vmId, p.saveTmp), opts);
      } catch (err) {
        await this.host.run(fileCmd.remove(p.saveTmp)).catch(() => {});
        throw err;
      }
      await this.host.ok(fileCmd.move(p.saveTmp, p.save), opts);
      return "suspended";
    });
  }

  resume(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async () => {
      const probe = await this.host.probe(vmId, opts);
      const state = XenHost.stateOf(probe);
      if (state === "running") return "running";
      if (state === "absent") throw this.notFound(vmId);
      if (state !== "suspended") throw this.invalid(vmId, "resume", state);
      const meta = probe.hasCfg ? await this.host.readMeta(vmId, opts) : undefined;
      return restore(this.host, vmId, meta, opts);
    });
  }

  migrate(vmId: string, target: MigrationTarget, opts: MigrateOptions): Promise<PowerState> {
    return this.op(vmId, opts, () =>
      migrate(this.host, vmId, target, opts, {
        peer: this.peer(target), // the target driver's per-vm lock is not taken: the command is ours
        migrateTimeoutMs: this.opts.migrateTimeoutMs ?? 30 * 60_000,
      }),
    );
  }

  async domainState(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    this.ensureOpen();
    return XenHost.stateOf(await this.host.probe(assertVmId(vmId), opts));
  }

  async inventory(opts: OpOptions = {}): Promise<HostInventory> {
    this.ensureOpen();
    return inventoryOf(this.host, this.load, opts);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.opts.runner.close();
  }

  private peer(target: MigrationTarget): XenHost | undefined {
    const peer = target.hostId === this.hostId ? undefined : this.opts.peers?.(target.hostId);
    if (!peer) return undefined;
    const stateDir = assertStateDir(peer.stateDir ?? DEFAULT_STATE_DIR);
    return new XenHost(target.hostId, peer.runner, stateDir, this.opts.commandTimeoutMs ?? 60_000);
  }

  /** Every operation: driver open, vmId valid, not aborted, one at a time per vmId. */
  private op(vmId: string, opts: OpOptions, fn: () => Promise<PowerState>): Promise<PowerState> {
    try {
      this.ensureOpen();
      assertVmId(vmId);
    } catch (err) {
      return Promise.reject(err);
    }
    const prev = this.locks.get(vmId) ?? Promise.resolve();
    const run = prev.then(() => {
      this.ensureOpen();
      if (opts.signal?.aborted) throw new DriverError(E.aborted, "operation aborted");
      return fn();
    });
    const tail = run.catch(() => {});
    this.locks.set(vmId, tail);
    void tail.then(() => {
      if (this.locks.get(vmId) === tail) this.locks.delete(vmId);
    });
    return run;
  }

  private get pollMs(): number {
    return this.opts.pollMs ?? 250;
  }

  private ensureOpen(): void {
    if (this.closed) throw new DriverError(E.hostUnreachable, `driver for host ${this.hostId} is closed`);
  }

  private notFound(vmId: string): DriverError {
    return new DriverError(E.domainNotFound, `no domain for vm ${vmId} on host ${this.hostId}`);
  }

  private invalid(vmId: string, action: string, state: string): DriverError {
    return new DriverError(E.invalidState, `cannot ${action} vm ${vmId}: it is ${state}`);
  }

  private async sleep(ms: number, opts: OpOptions): Promise<void> {
    try {
      await sleep(Math.max(0, ms), opts.signal);
    } catch (cause) {
      throw new DriverError(E.aborted, "operation aborted", { cause });
    }
  }
}
