/**
 * Pure: the xl domain config a VM runs from, where the driver keeps it on the host, and the names it
 * gives domains. A domain is addressed only by `usher-<vmId>`, a name built from a validated vmId (never
 * all digits, never starting with `-`, so xl reads it neither as a domain id nor as an option). xl has
 * no metadata element, so Usher's own record (vmId, opId, the user's VM name, size) is one comment line
 * of ASCII-only JSON at the top of `<stateDir>/xen/<vmId>.cfg`: xl never interprets it, and the user's
 * name appears nowhere else.
 */
import { z } from "zod";
import { VmNetwork, type VmSpec } from "../../../shared/contracts/index.ts";
import { DriverError, DriverErrorCode } from "../errors.ts";
import { isIpv4, macForAddress } from "../nic.ts";
import { UnsafeValueError } from "./errors.ts";

/** Where the driver keeps configs, managed saves and disk images on a host unless told otherwise. */
export const DEFAULT_STATE_DIR = "/var/lib/usher";
export const DOMAIN_PREFIX = "usher-";

// Letters, digits, `_` and single `-`: `--` is what xl appends while migrating (`--incoming`).
const VM_ID = /^[A-Za-z0-9](?:[A-Za-z0-9_]|-(?!-)){0,62}$/;
const IMAGE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const ABS_PATH = /^(?:\/[A-Za-z0-9_][A-Za-z0-9._-]*)+$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const BRIDGE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;
const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

const refuse = (what: string, value: unknown): never => {
  throw new UnsafeValueError(`${what} is not allowed here: ${JSON.stringify(value)}`);
};

export function assertVmId(vmId: string): string {
  return VM_ID.test(vmId) ? vmId : refuse("vmId", vmId);
}

/** The xl domain name of a VM. */
export function domainName(vmId: string): string {
  return `${DOMAIN_PREFIX}${assertVmId(vmId)}`;
}

/** The vmId a domain name stands for; undefined for foreign domains and those mid-migration. */
export function vmIdOfDomain(name: string): string | undefined {
  if (!name.startsWith(DOMAIN_PREFIX)) return undefined;
  const vmId = name.slice(DOMAIN_PREFIX.length);
  return VM_ID.test(vmId) ? vmId : undefined;
}

export type XenPaths = {
  /** Folder of configs and managed saves. */
  dir: string;
  cfg: string;
  /** Written first, then renamed over `cfg`, so a half-written config is never read. */
  cfgTmp: string;
  /** Managed save (`xl save`); present and no domain means suspended. */
  save: string;
  saveTmp: string;
  /** The VM's copy-on-write disk over its base image. */
  overlay: string;
};

/** An absolute path of plain components (letters, digits, `._-`; no `..`, no spaces, no quotes). */
export function assertAbsolutePath(path: string, what = "path"): string {
  return ABS_PATH.test(path) && !path.split("/").includes("..") ? path : refuse(what, path);
}

export function assertStateDir(dir: string): string {
  return assertAbsolutePath(dir, "state folder");
}

export function xenPaths(stateDir: string, vmId: string): XenPaths {
  const root = assertStateDir(stateDir);
  const id = assertVmId(vmId);
  const dir = `${root}/xen`;
  return {
    dir,
    cfg: `${dir}/${id}.cfg`,
    cfgTmp: `${dir}/${id}.cfg.tmp`,
    save: `${dir}/${id}.save`,
    saveTmp: `${dir}/${id}.save.tmp`,
    overlay: `${root}/images/${id}.qcow2`,
  };
}

/** Base images live as `<stateDir>/images/base/<image>.qcow2`. */
export function baseImagePath(stateDir: string, image: string): string {
  return `${assertStateDir(stateDir)}/images/base/${IMAGE.test(image) ? image : refuse("image", image)}.qcow2`;
}

/** Usher's record of a domain, kept in the config's first lines. */
export const XenMeta = z.object({
  v: z.literal(1),
  vmId: z.string().regex(VM_ID),
  opId: z.string(),
  vmName: z.string(),
  uuid: z.string().regex(UUID),
  vcpus: z.number().int().min(1),
  memoryMiB: z.number().int().min(1),
  image: z.string().regex(IMAGE).optional(),
  /** The VM's address (IP manager) the vif was written with. */
  network: VmNetwork.optional(),
});
export type XenMeta = z.infer<typeof XenMeta>;

export const META_PREFIX = "# usher-meta: ";

/** JSON with every character outside printable ASCII escaped: one safe comment line, whatever the name. */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** The meta record of a config's text, or undefined when it has none (not one of Usher's). */
export function parseConfigMeta(text: string): XenMeta | undefined {
  const line = text.split("\n").find((l) => l.startsWith(META_PREFIX));
  if (!line) return undefined;
  try {
    const parsed = XenMeta.safeParse(JSON.parse(line.slice(META_PREFIX.length)));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

export type XenGuestType = "hvm" | "pvh";

/**
 * A network interface: the bridge to plug into; with `vlan`, an Open vSwitch bridge tags the port; `ip`
 * goes to the hotplug script (vif-route, vif-nat and antispoofing rules use it).
 */
export type XenNetwork = { bridge: string; vlan?: number; mac?: string; ip?: string };

/**
 * The vif of a VM with an address from the IP manager: the host's guest bridge, the MAC derived from
 * the address, the range's VLAN tag (else the bridge's own) and `ip=`. A host without a guest bridge
 * cannot give the VM its address: refused rather than started unreachable.
 */
export function addressedVif(hostId: string, base: XenNetwork | undefined, network: VmNetwork): XenNetwork {
  if (!base)
    throw new DriverError(
      DriverErrorCode.notSupported,
      `host ${hostId} has no bridge for the NIC of address ${network.address} (xen.network in the agent config)`,
    );
  const vlan = network.vlan ?? base.vlan;
  return {
    bridge: base.bridge,
    mac: macForAddress(network.address),
    ip: network.address,
    ...(vlan !== undefined ? { vlan } : {}),
  };
}

export type XlConfigInput = {
  vmId: string;
  vmName: string;
  opId: string;
  /** The domain's UUID, chosen once when it is defined and kept for its life. */
  uuid: string;
  spec: VmSpec;
  stateDir: string;
  guestType?: XenGuestType;
  /** PVH guests boot this kernel (e.g. a pvgrub image); HVM guests boot from their disk. */
  kernel?: string;
  network?: XenNetwork;
  /** The VM's address (IP manager), recorded in the meta line; `addressedVif` makes its vif. */
  vmNetwork?: VmNetwork;
};

/** An xl config string value: double-quoted, and refused when it has a quote, backslash or control byte. */
export function xlString(value: string, what: string): string {
  return /^[\x20-\x7e]*$/.test(value) && !/["\\]/.test(value) ? `"${value}"` : refuse(what, value);
}

const positiveInt = (n: number, what: string): number =>
  Number.isSafeInteger(n) && n > 0 ? n : refuse(what, n);

/** A stable MAC in Xen's OUI (00:16:3e), from the domain's UUID, so the guest keeps it across boots. */
export function macFor(uuid: string): string {
  const hex = uuid.replaceAll("-", "").slice(-6);
  const bytes = [hex.slice(0, 2), hex.slice(2, 4), hex.slice(4, 6)];
  bytes[0] = (Number.parseInt(bytes[0] ?? "0", 16) & 0x7f).toString(16).padStart(2, "0");
  return `00:16:3e:${bytes.join(":")}`;
}

function vifSpec(network: XenNetwork, uuid: string): string {
  if (!BRIDGE.test(network.bridge)) refuse("bridge", network.bridge);
  const mac = network.mac ?? macFor(uuid);
  if (!MAC.test(mac)) refuse("mac", mac);
  if (network.ip !== undefined && !isIpv4(network.ip)) refuse("ip", network.ip);
  const ip = network.ip !== undefined ? `, ip=${network.ip}` : "";
  if (network.vlan === undefined) return `bridge=${network.bridge}, mac=${mac}${ip}`;
  const vlan = Number.isSafeInteger(network.vlan) && network.vlan >= 1 && network.vlan <= 4094;
  if (!vlan) refuse("vlan", network.vlan);
  // vif-openvswitch reads `bridge=<bridge>.<tag>` as an access port with that VLAN tag.
  return `bridge=${network.bridge}.${network.vlan}, mac=${mac}${ip}, script=vif-openvswitch`;
}

function assertVmNetwork(n: VmNetwork): VmNetwork {
  const parsed = VmNetwork.safeParse(n);
  return parsed.success ? parsed.data : refuse("network", n);
}

/** The xl config of a VM. Throws `UnsafeValueError` for any value it will not write. */
export function buildXlConfig(input: XlConfigInput): string {
  const paths = xenPaths(input.stateDir, input.vmId);
  if (!UUID.test(input.uuid)) refuse("uuid", input.uuid);
  const vcpus = positiveInt(input.spec.vcpus, "vcpus");
  const memoryMiB = positiveInt(input.spec.memoryMiB, "memoryMiB");
  const type = input.guestType ?? "hvm";
  if (type !== "hvm" && type !== "pvh") refuse("guest type", type);
  const meta: XenMeta = {
    v: 1,
    vmId: input.vmId,
    opId: input.opId,
    vmName: input.vmName,
    uuid: input.uuid,
    vcpus,
    memoryMiB,
    ...(input.spec.image ? { image: input.spec.image } : {}),
    ...(input.vmNetwork ? { network: assertVmNetwork(input.vmNetwork) } : {}),
  };
  const lines = [
    "# Usher-managed Xen domain, written by the bridge agent: do not edit.",
    `${META_PREFIX}${asciiJson(meta)}`,
    `name = ${xlString(domainName(input.vmId), "name")}`,
    `uuid = ${xlString(input.uuid, "uuid")}`,
    `type = ${xlString(type, "type")}`,
    `memory = ${memoryMiB}`,
    `maxmem = ${memoryMiB}`,
    `vcpus = ${vcpus}`,
    `on_poweroff = "destroy"`,
    `on_reboot = "restart"`,
    `on_crash = "restart"`,
  ];
  if (type === "pvh") {
    const kernel = input.kernel ?? refuse("pvh guest without a kernel", input.kernel);
    lines.push(`kernel = ${xlString(assertAbsolutePath(kernel, "kernel"), "kernel")}`);
  }
  if (input.spec.image) {
    baseImagePath(input.stateDir, input.spec.image); // validates the name
    // `target=` goes last: xl reads the rest of the string as the path.
    lines.push(
      `disk = [ ${xlString(`format=qcow2, vdev=xvda, access=rw, target=${paths.overlay}`, "disk")} ]`,
    );
  }
  if (input.network) lines.push(`vif = [ ${xlString(vifSpec(input.network, input.uuid), "vif")} ]`);
  return `${lines.join("\n")}\n`;
}
