/**
 * The one interface every hypervisor driver implements (sim now; kvm over virsh and xen over xl next).
 * A driver is bound to one host. Every operation resolves to the domain's power state afterwards and
 * fails with a `DriverError` (drivers/errors.ts). Operations are idempotent: repeating one whose end
 * state already holds succeeds (pause of a paused domain → `paused`), so a redelivered command is safe.
 * Domains are found by the Usher vmId recorded in their metadata, never by name alone.
 */
import type {
  HostInventory,
  HypervisorKind,
  MigrationTarget,
  PowerState,
  VmNetwork,
  VmSpec,
} from "../../shared/contracts/index.ts";

/** What a driver can do; the executor refuses actions a driver lacks with `not_supported`. */
export type DriverCapabilities = {
  liveMigration: boolean;
  pause: boolean;
  suspend: boolean;
  reboot: boolean;
};

/** Options every operation takes. */
export type OpOptions = {
  /** The operation asking, recorded in the domain's metadata; lets a driver recognise a redelivery. */
  opId?: string;
  /** Aborts the operation (deadline passed, agent stopping); the driver rejects with code `aborted`. */
  signal?: AbortSignal;
};

export type StartRequest = {
  vmId: string;
  vmName: string;
  opId: string;
  spec: VmSpec;
  /** The VM's address and VLAN (IP manager), for its NIC; kept with the domain where the driver can. */
  network?: VmNetwork;
};

export type ShutdownOptions = OpOptions & {
  /** How long the guest may take to power off on ACPI before it is forced off. */
  timeoutMs: number;
};

export type MigrateOptions = OpOptions & {
  /** Live (the guest keeps running) or paused while its memory is copied. */
  live: boolean;
  /** Called as the migration advances, 0..100. */
  onProgress?: (percent: number) => void;
};

export interface HypervisorDriver {
  readonly kind: HypervisorKind;
  readonly hostId: string;
  readonly capabilities: DriverCapabilities;
  /** Defines (when no domain has this vmId) and starts the domain; brings an existing one to running. */
  start(req: StartRequest, opts?: OpOptions): Promise<PowerState>;
  /** Graceful power-off (ACPI), forced after `timeoutMs`. → `stopped`. */
  shutdown(vmId: string, opts: ShutdownOptions): Promise<PowerState>;
  /** Forces the domain off and undefines it. → `absent`; a domain already absent is success. */
  destroy(vmId: string, opts?: OpOptions): Promise<PowerState>;
  /** Guest reboot of a running domain. → `running`. */
  reboot(vmId: string, opts?: OpOptions): Promise<PowerState>;
  /** Power cycle: force off, then start. → `running`. */
  cycle(vmId: string, opts?: OpOptions): Promise<PowerState>;
  /** Freezes the vCPUs. → `paused`. */
  pause(vmId: string, opts?: OpOptions): Promise<PowerState>;
  /** → `running`. */
  unpause(vmId: string, opts?: OpOptions): Promise<PowerState>;
  /** Managed save: memory to disk, domain off. → `suspended`. */
  suspend(vmId: string, opts?: OpOptions): Promise<PowerState>;
  /** Restores a managed save. → `running`. */
  resume(vmId: string, opts?: OpOptions): Promise<PowerState>;
  /** Moves the domain to `target`; resolves to its state there. Already there is success. */
  migrate(vmId: string, target: MigrationTarget, opts: MigrateOptions): Promise<PowerState>;
  /** The domain's state on this host; `absent` when it has none. */
  domainState(vmId: string, opts?: OpOptions): Promise<PowerState>;
  /** What is on the host: domains with vmId and power state, and free capacity. */
  inventory(opts?: OpOptions): Promise<HostInventory>;
  /** Releases connections; safe to call twice. */
  close(): Promise<void>;
}
