/**
 * The driver registry: an explicit map from hypervisor kind to factory, so the compiler follows every
 * driver (no loading by string). kvm and xen hosts are driven over SSH (one runner per host, shared).
 */
import type { HypervisorKind, MigrationTarget } from "../../shared/contracts/index.ts";
import { type HostConfig, simSettings } from "../config.ts";
import type { RunnerPool } from "../transport/pool.ts";
import type { HypervisorDriver } from "./driver.ts";
import { DriverError, DriverErrorCode } from "./errors.ts";
import { KvmDriver } from "./kvm/kvm.ts";
import { defaultMigrationUris } from "./kvm/migrate.ts";
import { SimDriver } from "./sim.ts";
import type { SimWorld } from "./sim-world.ts";
import { XenDriver } from "./xen/xen.ts";

/** What factories may need besides the host's config. */
export type DriverDeps = {
  /** The world all sim hosts of this agent share (so migrations between them work). */
  simWorld: SimWorld;
  /** The agent's SSH runners, one per host. */
  runners: RunnerPool;
};

export type DriverFactory = (host: HostConfig, deps: DriverDeps) => HypervisorDriver;

function runnerOf(host: HostConfig, deps: DriverDeps) {
  const runner = deps.runners.get(host.id);
  if (!runner)
    throw new DriverError(DriverErrorCode.driverUnavailable, `host ${host.id} has no ssh settings`);
  return runner;
}

/** `qemu+ssh://user@address:port/system` for a target host of this agent, with its migration settings. */
function kvmMigrationUri(deps: DriverDeps) {
  return (target: MigrationTarget) => {
    const base = defaultMigrationUris(target);
    const cfg = deps.runners.host(target.hostId)?.kvm?.migration;
    if (!cfg) return base;
    const params = new URLSearchParams();
    if (cfg.keyfile) params.set("keyfile", cfg.keyfile);
    if (cfg.noVerify) params.set("no_verify", "1");
    const query = params.size ? `?${params.toString()}` : "";
    return { ...base, desturi: `qemu+ssh://${cfg.user}@${target.address}:${cfg.port}/system${query}` };
  };
}

export const driverRegistry: Record<HypervisorKind, DriverFactory> = {
  sim: (host, { simWorld }) => {
    if (!simWorld.host(host.id)) simWorld.addHost(host.id, simSettings(host));
    return new SimDriver(simWorld, host.id);
  },
  kvm: (host, deps) =>
    new KvmDriver({
      hostId: host.id,
      runner: runnerOf(host, deps),
      uri: host.kvm?.uri ?? "qemu:///system",
      domainType: host.kvm?.domainType ?? "kvm",
      ...(host.kvm?.imagesDir ? { imagesDir: host.kvm.imagesDir } : {}),
      ...(host.kvm?.nics ? { nics: host.kvm.nics } : {}),
      peers: (id) => (deps.runners.host(id)?.kind === "kvm" ? deps.runners.get(id) : undefined),
      migrationUri: kvmMigrationUri(deps),
    }),
  xen: (host, deps) =>
    new XenDriver({
      hostId: host.id,
      runner: runnerOf(host, deps),
      ...(host.xen?.stateDir ? { stateDir: host.xen.stateDir } : {}),
      ...(host.xen?.network ? { network: host.xen.network } : {}),
      // A migration checks the target's capacity and moves the domain's config there.
      peers: (id) => {
        const peer = deps.runners.host(id);
        const runner = deps.runners.get(id);
        if (peer?.kind !== "xen" || !runner) return undefined;
        return { runner, ...(peer.xen?.stateDir ? { stateDir: peer.xen.stateDir } : {}) };
      },
    }),
};

/** Makes the driver for one host from the registry. */
export function createDriver(host: HostConfig, deps: DriverDeps): HypervisorDriver {
  return driverRegistry[host.kind](host, deps);
}
