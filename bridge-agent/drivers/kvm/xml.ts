/**
 * Domain XML, both ways (pure). `buildDomainXml` writes what `virsh define` takes: a deterministic
 * name (`usher-<vmId>`) and Usher's metadata (vm id, defining op, the user's VM name, escaped), so a
 * domain is found again by name and confirmed by metadata after an agent restart. The parsers read
 * back what `virsh dumpxml` and `virsh metadata` print; they are regex-based because they only need
 * a few fields of libvirt's own, regular output (no XML library in the agent's dependencies).
 */
import { createHash } from "node:crypto";
import type { VmNetwork, VmSpec } from "../../../shared/contracts/index.ts";
import { DriverError, DriverErrorCode } from "../errors.ts";
import { isIpv4, macForAddress } from "../nic.ts";
import { check } from "./errors.ts";
import {
  assertAbsPath,
  assertBridge,
  assertFileName,
  assertMac,
  assertOpId,
  assertUuid,
  assertVlan,
  assertVmId,
  isUuid,
  isVmId,
} from "./validate.ts";

/** Namespace of Usher's element in a domain's `<metadata>`. */
export const USHER_NS = "https://usher.dev/xml/vm/1";
/** How long the user's VM name may be in metadata (it is informational only). */
const MAX_NAME = 256;

/** The deterministic domain name of a VM: never the user's name (which could be `3` or `--help`). */
export const domainName = (vmId: string): string => `usher-${assertVmId(vmId)}`;

/** Namespace of the name-based (v5) domain UUIDs below. */
const UUID_NAMESPACE = Buffer.from("5b0c4a1e8f3d4c2a9e7b6d1f0a2c3e4d", "hex");

/**
 * The domain UUID of a VM, derived from its id (RFC 9562 version 5). Two defines racing for one
 * vmId then name the same domain, and libvirt updates it instead of making a second.
 */
export function domainUuid(vmId: string): string {
  const h = createHash("sha1").update(UUID_NAMESPACE).update(assertVmId(vmId)).digest();
  h[6] = ((h[6] ?? 0) & 0x0f) | 0x50;
  h[8] = ((h[8] ?? 0) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

export type NicSpec = {
  /** Host bridge to attach to. */
  bridge: string;
  /** 802.1Q tag; needs an Open vSwitch bridge (libvirt refuses VLAN tags on Linux bridges). */
  vlan?: number;
  mac?: string;
};

export type DomainXmlInput = {
  vmId: string;
  vmName: string;
  opId: string;
  uuid: string;
  spec: Pick<VmSpec, "vcpus" | "memoryMiB">;
  /** `kvm` (hardware) or `qemu` (TCG, where /dev/kvm is missing). */
  domainType: "kvm" | "qemu";
  /** A qcow2 overlay over the VM's base image (named in metadata); diskless when absent. */
  disk?: { overlayPath: string; image?: string };
  nics?: NicSpec[];
  /** The VM's address (IP manager), recorded in Usher's metadata; `addressedNics` puts it on the NIC. */
  network?: VmNetwork;
};

/**
 * The host's NICs for a VM with an address: the first (primary) NIC carries it, with the MAC derived
 * from the address and the range's VLAN tag (else the NIC's own); the others stay as configured. A host
 * without any bridge cannot give the VM its address: refused rather than started unreachable.
 */
export function addressedNics(
  hostId: string,
  nics: readonly NicSpec[] | undefined,
  network?: VmNetwork,
): NicSpec[] {
  if (!network) return [...(nics ?? [])];
  const [primary, ...rest] = nics ?? [];
  if (!primary)
    throw new DriverError(
      DriverErrorCode.notSupported,
      `host ${hostId} has no bridge for the NIC of address ${network.address} (kvm.nics in the agent config)`,
    );
  const vlan = network.vlan ?? primary.vlan;
  return [
    { bridge: primary.bridge, mac: macForAddress(network.address), ...(vlan !== undefined ? { vlan } : {}) },
    ...rest,
  ];
}

/** XML-escapes text; characters XML 1.0 cannot carry at all become U+FFFD. */
export function xmlEscape(text: string): string {
  return text
    .replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, "\uFFFD")
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&apos;");
}

/** Reverses `xmlEscape` (and numeric references), as libvirt's output needs. */
export function xmlUnescape(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|lt|gt|amp|quot|apos);/g, (_, ref: string) => {
    if (ref.startsWith("#x")) return String.fromCodePoint(Number.parseInt(ref.slice(2), 16));
    if (ref.startsWith("#")) return String.fromCodePoint(Number.parseInt(ref.slice(1), 10));
    return { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" }[ref] ?? "";
  });
}

/** The domain XML for `virsh define`. Throws `invalid_input` for any value out of its pattern. */
export function buildDomainXml(input: DomainXmlInput): string {
  const { vcpus, memoryMiB } = input.spec;
  check(Number.isInteger(vcpus) && vcpus >= 1 && vcpus <= 512, `vcpus out of range: ${vcpus}`);
  check(
    Number.isInteger(memoryMiB) && memoryMiB >= 16 && memoryMiB <= 16 * 1024 * 1024,
    `memoryMiB out of range: ${memoryMiB}`,
  );
  check(input.domainType === "kvm" || input.domainType === "qemu", `bad domain type ${input.domainType}`);
  const name = [...input.vmName].slice(0, MAX_NAME).join("");
  const devices = [
    ...(input.disk ? diskXml(input.disk.overlayPath) : []),
    ...(input.nics ?? []).flatMap(nicXml),
    `<serial type="pty"><target port="0"/></serial>`,
    `<console type="pty"><target type="serial" port="0"/></console>`,
  ];
  return [
    `<domain type="${input.domainType}">`,
    `  <name>${domainName(input.vmId)}</name>`,
    `  <uuid>${assertUuid(input.uuid)}</uuid>`,
    "  <metadata>",
    `    <usher:vm xmlns:usher="${USHER_NS}">`,
    `      <usher:id>${input.vmId}</usher:id>`,
    `      <usher:op>${assertOpId(input.opId)}</usher:op>`,
    `      <usher:name>${xmlEscape(name)}</usher:name>`,
    ...(input.disk?.image !== undefined
      ? [`      <usher:image>${assertFileName(input.disk.image, "image name")}</usher:image>`]
      : []),
    ...(input.network ? networkXml(input.network) : []),
    "    </usher:vm>",
    "  </metadata>",
    `  <memory unit="MiB">${memoryMiB}</memory>`,
    `  <vcpu>${vcpus}</vcpu>`,
    `  <os><type arch="x86_64" machine="pc">hvm</type>${input.disk ? `<boot dev="hd"/>` : ""}</os>`,
    // ACPI so that a guest OS hears `virsh shutdown`.
    "  <features><acpi/><apic/></features>",
    "  <on_poweroff>destroy</on_poweroff>",
    "  <on_reboot>restart</on_reboot>",
    "  <on_crash>destroy</on_crash>",
    "  <devices>",
    ...devices.map((d) => `    ${d}`),
    "  </devices>",
    "</domain>",
    "",
  ].join("\n");
}

/** Usher's record of the VM's address: range (escaped), `address/prefix`, gateway and VLAN. */
function networkXml(n: VmNetwork): string[] {
  const quad = (a: string) => {
    check(isIpv4(a), `not an IPv4 address: ${JSON.stringify(a)}`);
    return a;
  };
  check(
    Number.isInteger(n.prefixLength) && n.prefixLength >= 8 && n.prefixLength <= 30,
    `bad prefix ${n.prefixLength}`,
  );
  return [
    `      <usher:range>${xmlEscape(n.range)}</usher:range>`,
    `      <usher:address>${quad(n.address)}/${n.prefixLength}</usher:address>`,
    ...(n.gateway !== undefined ? [`      <usher:gateway>${quad(n.gateway)}</usher:gateway>`] : []),
    ...(n.vlan !== undefined ? [`      <usher:vlan>${assertVlan(n.vlan)}</usher:vlan>`] : []),
  ];
}

function diskXml(overlayPath: string): string[] {
  const path = assertAbsPath(overlayPath, "overlay path");
  return [
    `<disk type="file" device="disk"><driver name="qemu" type="qcow2"/><source file="${path}"/>` +
      `<target dev="vda" bus="virtio"/></disk>`,
  ];
}

function nicXml(nic: NicSpec): string[] {
  const parts = [`<source bridge="${assertBridge(nic.bridge)}"/>`];
  if (nic.mac !== undefined) parts.push(`<mac address="${assertMac(nic.mac)}"/>`);
  if (nic.vlan !== undefined) {
    parts.push(`<vlan><tag id="${assertVlan(nic.vlan)}"/></vlan>`, `<virtualport type="openvswitch"/>`);
  }
  parts.push(`<model type="virtio"/>`);
  return [`<interface type="bridge">${parts.join("")}</interface>`];
}

/** Usher's metadata read back from a domain. */
export type UsherMeta = { vmId: string; opId?: string; name?: string; image?: string; network?: VmNetwork };

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const NS_BLOCK = new RegExp(
  `<([A-Za-z_][\\w.-]*):vm\\s+xmlns:\\1=(["'])${escapeRe(USHER_NS)}\\2\\s*>([\\s\\S]*?)</\\1:vm>`,
);

/**
 * Usher's metadata from `virsh dumpxml` output (the prefixed, namespaced element) or from
 * `virsh metadata <dom> <ns>` output (the bare `<vm>` element). Undefined when there is none or its
 * vm id is not one Usher makes.
 */
export function parseUsherMetadata(xml: string): UsherMeta | undefined {
  let prefix = "";
  let body: string | undefined;
  const ns = NS_BLOCK.exec(xml);
  if (ns) {
    prefix = `${ns[1]}:`;
    body = ns[3];
  } else {
    body = /^\s*<vm>([\s\S]*?)<\/vm>\s*$/.exec(xml)?.[1];
  }
  if (body === undefined) return undefined;
  const child = (tag: string): string | undefined => {
    const p = escapeRe(prefix + tag);
    const m = new RegExp(`<${p}>([^<]*)</${p}>|<${p}\\s*/>`).exec(body);
    return m ? xmlUnescape(m[1] ?? "") : undefined;
  };
  const vmId = child("id");
  if (!vmId || !isVmId(vmId)) return undefined;
  const opId = child("op");
  const name = child("name");
  const image = child("image");
  const network = networkOf(child);
  return {
    vmId,
    ...(opId ? { opId } : {}),
    ...(name !== undefined ? { name } : {}),
    ...(image ? { image } : {}),
    ...(network ? { network } : {}),
  };
}

/** The address record of Usher's metadata; undefined when there is none (or it does not read). */
function networkOf(child: (tag: string) => string | undefined): VmNetwork | undefined {
  const range = child("range");
  const cidr = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(child("address") ?? "");
  if (range === undefined || !cidr) return undefined;
  const gateway = child("gateway");
  const vlan = child("vlan");
  return {
    range,
    address: cidr[1] as string,
    prefixLength: Number(cidr[2]),
    ...(gateway ? { gateway } : {}),
    ...(vlan ? { vlan: Number(vlan) } : {}),
  };
}

/** What the driver reads from `virsh dumpxml`. */
export type DomainInfo = {
  name: string;
  uuid: string;
  vcpus: number;
  memoryMiB: number;
  /** Top-level `<source file>` of each disk (not their backing files). */
  disks: string[];
  usher?: UsherMeta;
};

const UNIT_BYTES: Record<string, number> = {
  b: 1,
  bytes: 1,
  kb: 1000,
  k: 1024,
  kib: 1024,
  mb: 1e6,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  gb: 1e9,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  tb: 1e12,
  t: 1024 ** 4,
  tib: 1024 ** 4,
};

/** Parses `virsh dumpxml` output. Throws `invalid_input` when the name, UUID or sizes are missing. */
export function parseDomainXml(xml: string): DomainInfo {
  const usher = parseUsherMetadata(xml);
  // Other applications' metadata may hold any element: read the domain's own fields without it.
  const own = xml.replace(/<metadata>[\s\S]*?<\/metadata>/, "");
  const name = /<name>([^<]+)<\/name>/.exec(own)?.[1];
  const uuid = /<uuid>([^<]+)<\/uuid>/.exec(own)?.[1]?.toLowerCase();
  const mem = /<memory(?:\s+unit=(["'])(\w+)\1)?\s*>(\d+)<\/memory>/.exec(own);
  const vcpu = /<vcpu\b([^>]*)>(\d+)<\/vcpu>/.exec(own);
  check(name !== undefined && uuid !== undefined && isUuid(uuid), "domain XML without a name or UUID");
  check(mem !== null && vcpu !== null, `domain XML of ${name} without <memory> or <vcpu>`);
  const bytesPerUnit = UNIT_BYTES[(mem[2] ?? "KiB").toLowerCase()];
  check(bytesPerUnit !== undefined, `unknown memory unit ${mem[2]}`);
  const current = /\bcurrent=(["'])(\d+)\1/.exec(vcpu[1] ?? "")?.[2];
  const disks = [...own.matchAll(/<disk\b[^>]*>([\s\S]*?)<\/disk>/g)].flatMap((d) => {
    const src = /<source\s+file=(["'])([^"']*)\1/.exec(d[1] ?? "")?.[2];
    return src ? [xmlUnescape(src)] : [];
  });
  return {
    name: xmlUnescape(name),
    uuid,
    vcpus: Number(current ?? vcpu[2]),
    memoryMiB: Math.round((Number(mem[3]) * bytesPerUnit) / 1024 ** 2),
    disks,
    ...(usher ? { usher } : {}),
  };
}
