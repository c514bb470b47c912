/**
 * The simulated hypervisor: an in-memory host that behaves as the real drivers must (it documents the
 * contract, as nova's `virt/fake.py` does). States running/paused/suspended/stopped, delays scaled by
 * `delayScale`, capacity enforced on running and paused domains, a list of known images, one domain
 * per vmId, idempotent repeats, and migration to another sim host of the same `SimWorld`.
 */
import { randomUUID } from "node:crypto";
import type { HostInventory, MigrationTarget, PowerState } from "../../shared/contracts/index.ts";
import { sleep } from "../sleep.ts";
import type {
  DriverCapabilities,
  HypervisorDriver,
  MigrateOptions,
  OpOptions,
  ShutdownOptions,
  StartRequest,
} from "./driver.ts";
import { DriverError, DriverErrorCode as E } from "./errors.ts";
import type { SimDomain, SimHost, SimWorld } from "./sim-world.ts";

/** Nominal delays in ms, each multiplied by the host's delayScale. */
export const SIM_DELAYS_MS = {
  define: 100,
  start: 300,
  shutdown: 500,
  destroy: 100,
  reboot: 400,
  pause: 50,
  unpause: 50,
  suspend: 400,
  resume: 300,
  migrate: 1000,
} as const;

const MIGRATION_STEPS = 10;

export class SimDriver implements HypervisorDriver {
  readonly kind = "sim" as const;
  readonly hostId: string;
  readonly capabilities: DriverCapabilities = {
    liveMigration: true,
    pause: true,
    suspend: true,
    reboot: true,
  };
  private readonly world: SimWorld;
  private readonly host: SimHost;
  private closed = false;

  constructor(world: SimWorld, hostId: string) {
    const host = world.host(hostId);
    if (!host) throw new Error(`sim host ${hostId} is not in the world`);
    this.world = world;
    this.host = host;
    this.hostId = hostId;
  }

  start(req: StartRequest, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(req.vmId, opts, async () => {
      let d = this.host.findByVmId(req.vmId);
      if (!d) {
        const { image } = req.spec;
        if (image && !this.host.settings.images.includes(image)) {
          throw new DriverError(E.imageNotFound, `image ${image} is not on host ${this.hostId}`);
        }
        this.ensureCapacity(this.host, req.spec);
        await this.delay("define", opts);
        d = {
          uuid: randomUUID(),
          name: req.vmName,
          vmId: req.vmId,
          opId: req.opId,
          vcpus: req.spec.vcpus,
          memoryMiB: req.spec.memoryMiB,
          state: "stopped",
          createdAt: new Date().toISOString(),
          ...(image ? { image } : {}),
          ...(req.network ? { network: req.network } : {}),
        };
        this.host.domains.set(d.uuid, d);
        this.host.save();
      }
      if (d.state === "running") return "running";
      if (d.state !== "paused") this.ensureCapacity(this.host, d);
      // A paused domain is unpaused; a suspended one is restored from its managed save.
      await this.delay(d.state === "paused" ? "unpause" : d.state === "suspended" ? "resume" : "start", opts);
      return this.set(d, "running", opts);
    });
  }

  shutdown(vmId: string, opts: ShutdownOptions): Promise<PowerState> {
    return this.op(vmId, opts, async () => {
      const d = this.mustFind(vmId);
      if (d.state === "stopped") return "stopped";
      if (d.state === "suspended") throw this.invalid(d, "shutdown");
      // A paused guest cannot answer ACPI: it is forced off once the timeout passes.
      const guestMs = d.state === "paused" ? Number.POSITIVE_INFINITY : this.scaled("shutdown");
      await this.sleep(Math.min(guestMs, opts.timeoutMs), opts);
      return this.set(d, "stopped", opts);
    });
  }

  destroy(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async () => {
      const d = this.host.findByVmId(vmId);
      if (!d) return "absent";
      await this.delay("destroy", opts);
      this.host.domains.delete(d.uuid);
      this.host.save();
      return "absent";
    });
  }

  reboot(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async () => {
      const d = this.mustFind(vmId);
      if (d.state !== "running") throw this.invalid(d, "reboot");
      if (opts.opId && d.lastOpId === opts.opId) return "running"; // redelivered: rebooted already
      await this.delay("reboot", opts);
      return this.set(d, "running", opts);
    });
  }

  cycle(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async () => {
      const d = this.mustFind(vmId);
      if (opts.opId && d.lastOpId === opts.opId && d.state === "running") return "running";
      if (d.state !== "stopped") {
        await this.delay("destroy", opts);
        this.set(d, "stopped", opts); // forced off; a managed save is discarded
      }
      this.ensureCapacity(this.host, d);
      await this.delay("start", opts);
      return this.set(d, "running", opts);
    });
  }

  pause(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.transition(vmId, opts, "pause", ["running"], "paused");
  }

  unpause(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.transition(vmId, opts, "unpause", ["paused"], "running");
  }

  suspend(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.transition(vmId, opts, "suspend", ["running", "paused"], "suspended");
  }

  resume(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.transition(vmId, opts, "resume", ["suspended"], "running");
  }

  migrate(vmId: string, target: MigrationTarget, opts: MigrateOptions): Promise<PowerState> {
    return this.op(vmId, opts, async () => {
      const dest = this.world.host(target.hostId);
      if (target.kind !== "sim" || !dest) {
        throw new DriverError(
          E.migrationFailed,
          `no sim host ${target.hostId} (${target.kind}) to migrate to`,
        );
      }
      if (dest.id === this.hostId) throw new DriverError(E.migrationFailed, "target is the source host");
      if (!dest.reachable) throw new DriverError(E.hostUnreachable, `target host ${dest.id} is unreachable`);
      const d = this.host.findByVmId(vmId);
      if (!d) {
        const there = dest.findByVmId(vmId);
        if (there) return there.state; // migrated already (redelivered command)
        throw new DriverError(E.domainNotFound, `no domain for vm ${vmId} on host ${this.hostId}`);
      }
      if (d.state === "suspended") throw this.invalid(d, "migrate");
      if (d.image && !dest.settings.images.includes(d.image)) {
        throw new DriverError(E.imageNotFound, `image ${d.image} is not on target host ${dest.id}`);
      }
      const before = d.state;
      if (before !== "stopped") {
        this.ensureCapacity(dest, d);
        if (!opts.live && before === "running") d.state = "paused"; // offline copy: guest frozen meanwhile
        try {
          for (let step = 1; step <= MIGRATION_STEPS; step++) {
            await this.sleep(this.scaled("migrate") / MIGRATION_STEPS, opts);
            opts.onProgress?.((step * 100) / MIGRATION_STEPS);
          }
        } catch (err) {
          d.state = before; // aborted: the domain stays on the source as it was
          throw err;
        }
        this.ensurePowered(dest); // a host powered off (fenced) meanwhile ends the migration
      } else {
        await this.delay("define", opts); // a stopped domain moves as its definition only
        opts.onProgress?.(100);
      }
      this.host.domains.delete(d.uuid);
      dest.domains.set(d.uuid, { ...d, state: before, ...(opts.opId ? { lastOpId: opts.opId } : {}) });
      this.host.save();
      dest.save();
      return before;
    });
  }

  async domainState(vmId: string): Promise<PowerState> {
    this.ensureReachable();
    return this.host.findByVmId(vmId)?.state ?? "absent";
  }

  async inventory(): Promise<HostInventory> {
    this.ensureReachable();
    const domains = [...this.host.domains.values()].map((d) => ({
      uuid: d.uuid,
      vmId: d.vmId,
      opId: d.opId,
      name: d.name,
      powerState: d.state,
      vcpus: d.vcpus,
      memoryMiB: d.memoryMiB,
    }));
    return {
      hostId: this.hostId,
      reachable: true,
      domains,
      free: this.host.free(),
      load: this.host.cpuLoad(),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** The simulated host's out-of-band power-off (its "BMC"), used to fence it. Works while unreachable. */
  async powerOff(): Promise<void> {
    this.host.powerOff();
  }

  /** A plain state change: `from` → `to`, success when `to` already holds. */
  private transition(
    vmId: string,
    opts: OpOptions,
    action: "pause" | "unpause" | "suspend" | "resume",
    from: SimDomain["state"][],
    to: SimDomain["state"],
  ): Promise<PowerState> {
    return this.op(vmId, opts, async () => {
      const d = this.mustFind(vmId);
      if (d.state === to) return to;
      if (!from.includes(d.state)) throw this.invalid(d, action);
      if (to === "running" && d.state === "suspended") this.ensureCapacity(this.host, d);
      await this.delay(action, opts);
      return this.set(d, to, opts);
    });
  }

  /** Every mutating operation: host reachable, not aborted, one at a time per vmId. */
  private op(vmId: string, opts: OpOptions, fn: () => Promise<PowerState>): Promise<PowerState> {
    return this.world.withLock(vmId, async () => {
      this.ensureReachable();
      if (opts.signal?.aborted) throw new DriverError(E.aborted, "operation aborted");
      return fn();
    });
  }

  private set(d: SimDomain, state: SimDomain["state"], opts: OpOptions): SimDomain["state"] {
    this.ensurePowered(this.host); // powered off (fenced) during the operation: nothing changes
    d.state = state;
    if (opts.opId) d.lastOpId = opts.opId;
    this.host.save();
    return state;
  }

  private mustFind(vmId: string): SimDomain {
    const d = this.host.findByVmId(vmId);
    if (!d) throw new DriverError(E.domainNotFound, `no domain for vm ${vmId} on host ${this.hostId}`);
    return d;
  }

  private invalid(d: SimDomain, action: string): DriverError {
    return new DriverError(E.invalidState, `cannot ${action} domain ${d.name}: it is ${d.state}`);
  }

  private ensureCapacity(host: SimHost, need: { vcpus: number; memoryMiB: number }): void {
    const free = host.free();
    if (need.vcpus > free.vcpus || need.memoryMiB > free.memoryMiB) {
      throw new DriverError(
        E.insufficientResources,
        `host ${host.id} has ${free.vcpus} vCPUs and ${free.memoryMiB} MiB free; ${need.vcpus} vCPUs and ${need.memoryMiB} MiB needed`,
      );
    }
  }

  private ensurePowered(dest: SimHost): void {
    for (const h of [this.host, dest]) {
      if (h.poweredOff) throw new DriverError(E.hostUnreachable, `host ${h.id} was powered off`);
    }
  }

  private ensureReachable(): void {
    if (this.closed) throw new DriverError(E.hostUnreachable, `driver for host ${this.hostId} is closed`);
    if (!this.host.reachable) throw new DriverError(E.hostUnreachable, `host ${this.hostId} is unreachable`);
  }

  private scaled(what: keyof typeof SIM_DELAYS_MS): number {
    return SIM_DELAYS_MS[what] * this.host.settings.delayScale;
  }

  private delay(what: keyof typeof SIM_DELAYS_MS, opts: OpOptions): Promise<void> {
    return this.sleep(this.scaled(what), opts);
  }

  private async sleep(ms: number, opts: OpOptions): Promise<void> {
    try {
      await sleep(ms, opts.signal);
    } catch (cause) {
      throw new DriverError(E.aborted, "operation aborted", { cause });
    }
  }
}
