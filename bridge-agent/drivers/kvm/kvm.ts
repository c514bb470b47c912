/**
 * The KVM driver: libvirt's `virsh` (and `qemu-img` for disks) over a CommandRunner, so the same
 * code drives a local libvirtd or one reached over SSH. It keeps the contract the sim driver
 * documents (drivers/sim.ts) and is idempotent and crash-safe by construction: a VM's domain has a
 * deterministic name and UUID (`usher-<vmId>`, UUID v5 of the vmId) and carries the vmId in its
 * metadata, so an agent that died half-way and gets the command again finds what it made and
 * carries on from the domain's real state, never defining a second domain.
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
import * as cmd from "./commands.ts";
import { Images } from "./disks.ts";
import { commandError } from "./errors.ts";
import { type Status, VirshHost } from "./host.ts";
import { collectInventory } from "./inventory.ts";
import { defaultMigrationUris, migrateDomain } from "./migrate.ts";
import { assertOpId, assertVmId, isVmId } from "./validate.ts";
import { addressedNics, buildDomainXml, type DomainInfo, domainUuid, type NicSpec } from "./xml.ts";

export { DEFAULT_IMAGES_DIR } from "./disks.ts";
export { defaultMigrationUris } from "./migrate.ts";

export type KvmDriverConfig = {
  /** The host's id as the control plane knows it. */
  hostId: string;
  /** Runs commands on the host (local, or SSH); closed by `close()`. */
  runner: CommandRunner;
  /** libvirt connection URI on the host. Default `qemu:///system`. */
  uri?: string;
  /** `kvm` (hardware virtualisation, the default) or `qemu` (TCG, where /dev/kvm is missing). */
  domainType?: "kvm" | "qemu";
  /** Base images are `<imagesDir>/<image>.qcow2`; overlays go to `<imagesDir>/overlays/`. */
  imagesDir?: string;
  /**
   * Bridges every domain is attached to (none by default: the guest has no NIC). The first carries the
   * VM's address from the IP manager, when it has one: MAC from the address, the range's VLAN tag.
   */
  nics?: NicSpec[];
  /** Runners of the other KVM hosts, by host id: a migration looks there for the domain. */
  peers?: (hostId: string) => CommandRunner | undefined;
  /** How this host reaches a target in `virsh migrate`. Default `defaultMigrationUris`. */
  migrationUri?: (target: MigrationTarget) => { desturi: string; migrateuri?: string };
  /** How often shutdown looks whether the guest has powered off. Default 250 ms. */
  shutdownPollMs?: number;
  /** Each virsh command (migrations excepted) is killed after this long. Default 120 s. */
  commandTimeoutMs?: number;
};

export class KvmDriver implements HypervisorDriver {
  readonly kind = "kvm" as const;
  readonly hostId: string;
  readonly capabilities: DriverCapabilities = {
    liveMigration: true,
    pause: true,
    suspend: true,
    reboot: true,
  };
  private readonly host: VirshHost;
  private readonly cfg: KvmDriverConfig;
  private readonly images: Images;
  private readonly locks = new Map<string, Promise<unknown>>();
  private closed = false;

  constructor(cfg: KvmDriverConfig) {
    this.cfg = cfg;
    this.hostId = cfg.hostId;
    this.images = new Images(cfg.imagesDir);
    this.host = new VirshHost(
      cfg.hostId,
      cfg.runner,
      cfg.uri ?? cmd.DEFAULT_URI,
      cfg.commandTimeoutMs ?? 120_000,
    );
    cmd.virsh(this.host.uri); // validates the URI now rather than at the first command
  }

  start(req: StartRequest, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(req.vmId, opts, async (signal) => {
      assertVmId(req.vmId);
      assertOpId(req.opId);
      const { spec } = req;
      if (spec.hypervisor && spec.hypervisor !== "kvm") {
        throw new DriverError(E.notSupported, `host ${this.hostId} runs kvm, not ${spec.hypervisor}`);
      }
      const devices = Object.entries(spec.devices ?? {}).filter(([, n]) => n > 0);
      if (devices.length > 0) {
        throw new DriverError(
          E.notSupported,
          `the kvm driver does not pass devices through (${devices[0]?.[0]})`,
        );
      }
      // The memory check beside the lookup (each is a round trip to the host); its answer counts only
      // when a domain is to be made.
      const memory = this.host.ensureMemory(spec.memoryMiB, signal).then(
        () => undefined,
        (err: unknown) => err,
      );
      let d = await this.host.findBeforeDefine(req.vmId, signal);
      if (!d) {
        const plan = await this.newDomainNics(req, memory);
        // Refused: a domain of its name under another UUID (which the lookup by UUID does not see)
        // is still the VM's to start, whatever defining a new one would need.
        const made =
          "nics" in plan
            ? await this.defineAndStart(req, plan.nics, signal)
            : await this.host.find(req.vmId, signal);
        if (made === "running") return "running";
        if (!made) {
          if ("refusal" in plan) throw plan.refusal;
          throw new DriverError(E.domainNotFound, `domain of ${req.vmId} vanished after define`);
        }
        d = made;
      }
      const s = await this.host.status(d.uuid, signal);
      if (s.power === "running") return "running";
      if (s.power === "paused") return this.wake(d, s, signal);
      await this.host.ensureMemory(d.memoryMiB, signal);
      await this.host.ok(cmd.start(this.host.uri, d.uuid), { signal }); // restores a managed save
      return "running";
    });
  }

  /**
   * The NICs a new domain of the VM would get, or why none can be made here: a VM with an address
   * needs a bridge for it, and the host room (`memory`: the check's error, if it failed).
   */
  private async newDomainNics(
    req: StartRequest,
    memory: Promise<unknown>,
  ): Promise<{ nics: NicSpec[] } | { refusal: unknown }> {
    let nics: NicSpec[];
    try {
      nics = addressedNics(this.hostId, this.cfg.nics, req.network);
    } catch (refusal) {
      return { refusal };
    }
    const short = await memory;
    return short ? { refusal: short } : { nics };
  }

  /**
   * Makes the VM's domain (its overlay first, when it has an image), defined and started in one
   * round trip. "running", or the domain that was there already (another start defined it
   * meanwhile, or one of its name has another UUID) for the caller to start; undefined if it then
   * vanished.
   */
  private async defineAndStart(
    req: StartRequest,
    nics: NicSpec[],
    signal: AbortSignal | undefined,
  ): Promise<"running" | DomainInfo | undefined> {
    const { spec } = req;
    const disk = spec.image
      ? { overlayPath: this.images.overlayPath(req.vmId), image: spec.image }
      : undefined;
    if (disk) await this.images.createOverlay(this.host, disk.overlayPath, disk.image, { signal });
    const xml = buildDomainXml({
      vmId: req.vmId,
      vmName: req.vmName,
      opId: req.opId,
      uuid: domainUuid(req.vmId),
      spec,
      domainType: this.cfg.domainType ?? "kvm",
      ...(disk ? { disk } : {}),
      ...(nics.length ? { nics } : {}),
      ...(req.network ? { network: req.network } : {}),
    });
    const r = await this.host.exec(cmd.defineAndStart(this.host.uri, domainUuid(req.vmId)), {
      stdin: xml,
      signal,
    });
    if (r.code === 0) return "running";
    if (cmd.DEFINED.test(r.stdout)) throw commandError("virsh start", this.hostId, r.stderr);
    // "already exists": another start defined it meanwhile, or a domain of its name has another UUID
    // (findBeforeDefine looked by UUID only); find() tells a foreign one apart.
    if (!/already exists/.test(r.stderr)) throw commandError("virsh define", this.hostId, r.stderr);
    return this.host.find(req.vmId, signal);
  }

  shutdown(vmId: string, opts: ShutdownOptions): Promise<PowerState> {
    return this.op(vmId, opts, async (signal) => {
      const d = await this.mustFind(vmId, signal);
      const s = await this.host.status(d.uuid, signal);
      if (s.power === "stopped") return "stopped";
      if (s.power === "suspended") throw this.invalid(d, s, "shutdown");
      // A paused guest cannot hear ACPI until it runs again: it is forced off at the timeout.
      await this.host.tolerate(cmd.shutdown(this.host.uri, d.uuid), [E.invalidState], { signal });
      const until = performance.now() + opts.timeoutMs;
      const poll = this.cfg.shutdownPollMs ?? 250;
      while (performance.now() < until) {
        await this.wait(Math.min(poll, until - performance.now()), signal);
        if ((await this.host.status(d.uuid, signal)).power === "stopped") return "stopped";
      }
      await this.host.tolerate(cmd.destroy(this.host.uri, d.uuid), [E.invalidState], { signal });
      return "stopped";
    });
  }

  destroy(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async (signal) => {
      const d = await this.host.find(vmId, signal);
      if (d) {
        await this.host.tolerate(cmd.destroy(this.host.uri, d.uuid), [E.invalidState], { signal });
        await this.host.tolerate(cmd.undefine(this.host.uri, d.uuid), [E.domainNotFound], { signal });
        for (const path of this.images.ownDisks(d)) await this.host.ok(cmd.removeFile(path), { signal });
      } else if (isVmId(vmId)) {
        // An agent that died between undefine and removal left the overlay behind.
        await this.host.ok(cmd.removeFile(this.images.overlayPath(vmId)), { signal });
      }
      return "absent";
    });
  }

  reboot(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async (signal) => {
      const d = await this.mustFind(vmId, signal);
      const s = await this.host.status(d.uuid, signal);
      if (s.power !== "running") throw this.invalid(d, s, "reboot");
      await this.host.ok(cmd.reboot(this.host.uri, d.uuid), { signal });
      return "running";
    });
  }

  cycle(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async (signal) => {
      const d = await this.mustFind(vmId, signal);
      const s = await this.host.status(d.uuid, signal);
      if (s.power === "running" || s.power === "paused") {
        await this.host.tolerate(cmd.destroy(this.host.uri, d.uuid), [E.invalidState], { signal });
      } else {
        await this.host.ensureMemory(d.memoryMiB, signal);
      }
      // A fresh boot: a managed save, if any, is discarded.
      await this.host.ok(cmd.start(this.host.uri, d.uuid, { forceBoot: true }), { signal });
      return "running";
    });
  }

  pause(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async (signal) => {
      const d = await this.mustFind(vmId, signal);
      const s = await this.host.status(d.uuid, signal);
      if (s.power === "paused") return "paused";
      if (s.power !== "running") throw this.invalid(d, s, "pause");
      await this.host.ok(cmd.pause(this.host.uri, d.uuid), { signal });
      return "paused";
    });
  }

  unpause(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async (signal) => {
      const d = await this.mustFind(vmId, signal);
      const s = await this.host.status(d.uuid, signal);
      if (s.power === "running") return "running";
      if (s.power !== "paused") throw this.invalid(d, s, "unpause");
      return this.wake(d, s, signal);
    });
  }

  suspend(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async (signal) => {
      const d = await this.mustFind(vmId, signal);
      const s = await this.host.status(d.uuid, signal);
      if (s.power === "suspended") return "suspended";
      if (s.power !== "running" && s.power !== "paused") throw this.invalid(d, s, "suspend");
      await this.host.ok(cmd.managedSave(this.host.uri, d.uuid), { signal });
      return "suspended";
    });
  }

  resume(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    return this.op(vmId, opts, async (signal) => {
      const d = await this.mustFind(vmId, signal);
      const s = await this.host.status(d.uuid, signal);
      if (s.power === "running") return "running";
      if (s.power !== "suspended") throw this.invalid(d, s, "resume");
      await this.host.ensureMemory(d.memoryMiB, signal);
      await this.host.ok(cmd.start(this.host.uri, d.uuid), { signal });
      return "running";
    });
  }

  migrate(vmId: string, target: MigrationTarget, opts: MigrateOptions): Promise<PowerState> {
    return this.op(vmId, opts, async (signal) => {
      if (target.kind !== "kvm") {
        throw new DriverError(E.migrationFailed, `cannot migrate to ${target.kind} host ${target.hostId}`);
      }
      if (target.hostId === this.hostId)
        throw new DriverError(E.migrationFailed, "target is the source host");
      const peerRunner = this.cfg.peers?.(target.hostId);
      const peer = peerRunner
        ? new VirshHost(target.hostId, peerRunner, this.host.uri, this.cfg.commandTimeoutMs ?? 120_000)
        : undefined;
      const uris = (this.cfg.migrationUri ?? defaultMigrationUris)(target);
      return migrateDomain({
        source: this.host,
        peer,
        vmId,
        uris,
        live: opts.live,
        signal,
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
        images: this.images,
      });
    });
  }

  async domainState(vmId: string, opts: OpOptions = {}): Promise<PowerState> {
    this.ensureOpen();
    return this.host.vmState(vmId, opts.signal);
  }

  async inventory(opts: OpOptions = {}): Promise<HostInventory> {
    this.ensureOpen();
    return collectInventory(this.host, opts.signal);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.host.close();
  }

  /** Brings a paused (or guest-suspended) domain back to running. */
  private async wake(d: DomainInfo, s: Status, signal: AbortSignal | undefined): Promise<PowerState> {
    const argv =
      s.raw.state === "pmsuspended"
        ? cmd.pmWakeup(this.host.uri, d.uuid)
        : cmd.unpause(this.host.uri, d.uuid);
    await this.host.ok(argv, { signal });
    return "running";
  }

  private async mustFind(vmId: string, signal: AbortSignal | undefined): Promise<DomainInfo> {
    const d = await this.host.find(vmId, signal);
    if (!d) throw new DriverError(E.domainNotFound, `no domain for vm ${vmId} on host ${this.hostId}`);
    return d;
  }

  private invalid(d: DomainInfo, s: Status, action: string): DriverError {
    const reason = s.raw.reason ? ` (${s.raw.reason})` : "";
    return new DriverError(
      E.invalidState,
      `cannot ${action} domain ${d.name}: it is ${s.raw.state}${reason}`,
    );
  }

  private ensureOpen(): void {
    if (this.closed) throw new DriverError(E.hostUnreachable, `driver for host ${this.hostId} is closed`);
  }

  private async wait(ms: number, signal: AbortSignal | undefined): Promise<void> {
    try {
      await sleep(Math.max(0, ms), signal);
    } catch (cause) {
      throw new DriverError(E.aborted, "operation aborted", { cause });
    }
  }

  /** Every mutating operation: driver open, not aborted, one at a time per vmId (in this agent). */
  private op(vmId: string, opts: OpOptions, fn: (signal?: AbortSignal) => Promise<PowerState>) {
    const prev = this.locks.get(vmId) ?? Promise.resolve();
    const run = prev.then(() => {
      this.ensureOpen();
      if (opts.signal?.aborted) throw new DriverError(E.aborted, "operation aborted");
      return fn(opts.signal);
    });
    const settled = run.catch(() => {});
    this.locks.set(vmId, settled);
    void settled.then(() => {
      if (this.locks.get(vmId) === settled) this.locks.delete(vmId);
    });
    return run;
  }
}
