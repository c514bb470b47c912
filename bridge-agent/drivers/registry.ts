/**
 * The driver registry: an explicit map from hypervisor kind to factory, so the compiler follows every
 * driver (no loading by string). kvm and xen arrive with the SSH transport in the next issue.
 */
import type { HypervisorKind } from "../../shared/contracts/index.ts";
import { type HostConfig, simSettings } from "../config.ts";
import type { HypervisorDriver } from "./driver.ts";
import { DriverError, DriverErrorCode } from "./errors.ts";
import { SimDriver } from "./sim.ts";
import type { SimWorld } from "./sim-world.ts";

/** What factories may need besides the host's config. */
export type DriverDeps = {
  /** The world all sim hosts of this agent share (so migrations between them work). */
  simWorld: SimWorld;
};

export type DriverFactory = (host: HostConfig, deps: DriverDeps) => HypervisorDriver;

const notInThisBuild =
  (kind: HypervisorKind): DriverFactory =>
  (host) => {
    throw new DriverError(
      DriverErrorCode.driverUnavailable,
      `the ${kind} driver is not available in this build (host ${host.id}); use kind "sim"`,
    );
  };

export const driverRegistry: Record<HypervisorKind, DriverFactory> = {
  sim: (host, { simWorld }) => {
    if (!simWorld.host(host.id)) simWorld.addHost(host.id, simSettings(host));
    return new SimDriver(simWorld, host.id);
  },
  kvm: notInThisBuild("kvm"),
  xen: notInThisBuild("xen"),
};

/** Makes the driver for one host from the registry. */
export function createDriver(host: HostConfig, deps: DriverDeps): HypervisorDriver {
  return driverRegistry[host.kind](host, deps);
}
