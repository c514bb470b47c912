/**
 * Bringing a VM's domain up on a Xen host: defining it (image, capacity, disk overlay, config), creating
 * it from its config, restoring it from a managed save, and unpausing it for good.
 */
import { randomUUID } from "node:crypto";
import type { PowerState } from "../../../shared/contracts/index.ts";
import type { OpOptions, StartRequest } from "../driver.ts";
import { DriverError, DriverErrorCode as E } from "../errors.ts";
import { fileCmd, xl } from "./commands.ts";
import {
  addressedVif,
  baseImagePath,
  buildXlConfig,
  parseConfigMeta,
  type XenGuestType,
  type XenMeta,
  type XenNetwork,
} from "./config.ts";
import type { XenHost } from "./host.ts";
import { powerStateOfFlags } from "./parse.ts";

/** How many `xl unpause` calls to try: pauses nest in Xen, and someone else may have paused too. */
const MAX_UNPAUSES = 8;

export type DefineOptions = { guestType?: XenGuestType; kernel?: string; network?: XenNetwork };

/** Defines the VM: checks its image and the host's capacity, makes its disk overlay, writes its config. */
export async function define(
  host: XenHost,
  req: StartRequest,
  def: DefineOptions,
  opts: OpOptions,
): Promise<XenMeta> {
  const { image } = req.spec;
  // Before anything is made on the host: a VM with an address needs a bridge for it.
  const network = req.network ? addressedVif(host.hostId, def.network, req.network) : def.network;
  const p = host.paths(req.vmId);
  const base = image ? baseImagePath(host.stateDir, image) : undefined;
  if (base && !(await host.existing([base], opts)).has(base)) {
    throw new DriverError(E.imageNotFound, `image ${image} is not on host ${host.hostId} (${base})`);
  }
  await host.ensureCapacity(req.spec, opts);
  if (base && !(await host.existing([p.overlay], opts)).has(p.overlay)) {
    await host.ok(fileCmd.mkdir(p.overlay.slice(0, p.overlay.lastIndexOf("/"))), opts);
    await host.ok(fileCmd.overlay(base, p.overlay), opts);
  }
  const text = buildXlConfig({
    vmId: req.vmId,
    vmName: req.vmName,
    opId: req.opId,
    uuid: randomUUID(),
    spec: req.spec,
    stateDir: host.stateDir,
    ...def,
    ...(network ? { network } : {}),
    ...(req.network ? { vmNetwork: req.network } : {}),
  });
  await host.writeFile(p.cfg, p.cfgTmp, text, opts);
  return parseConfigMeta(text) as XenMeta;
}

/** `xl create` from the VM's config. A domain of that name appearing meanwhile counts as started. */
export async function create(host: XenHost, vmId: string, opts: OpOptions): Promise<PowerState> {
  const argv = xl.create(host.paths(vmId).cfg);
  const res = await host.run(argv, opts);
  if (res.code === 0) return "running";
  if (/already exists/.test(res.stderr)) {
    const row = await host.domain(vmId, opts);
    if (row && powerStateOfFlags(row.flags) === "running") return "running";
  }
  throw host.failure(argv, res);
}

/** `xl restore` of the managed save (which carries the domain's config), then the save is removed. */
export async function restore(
  host: XenHost,
  vmId: string,
  meta: XenMeta | undefined,
  opts: OpOptions,
): Promise<PowerState> {
  if (meta) await host.ensureCapacity(meta, opts);
  const p = host.paths(vmId);
  await host.ok(xl.restore(p.save), opts);
  await host.remove([p.save], opts);
  return "running";
}

/** `xl unpause` until the domain runs: one unpause undoes one pause. */
export async function unpauseFully(host: XenHost, vmId: string, opts: OpOptions): Promise<PowerState> {
  for (let i = 0; i < MAX_UNPAUSES; i++) {
    await host.ok(xl.unpause(vmId), opts);
    const row = await host.domain(vmId, opts);
    if (!row) throw new DriverError(E.domainNotFound, `vm ${vmId} left host ${host.hostId} while unpausing`);
    if (powerStateOfFlags(row.flags) !== "paused") return "running";
  }
  throw new DriverError(E.invalidState, `vm ${vmId} is still paused after ${MAX_UNPAUSES} unpauses`);
}
