/**
 * Validators for every value that reaches a virsh or qemu-img argument or the domain XML. The
 * transport quotes arguments for the shell, but the tools themselves would still read `--help` as an
 * option or `3` as a domain id, so values are held to strict patterns here, before any argv is built.
 */
import { check } from "./errors.ts";

/** Usher ids: `vm-…` / `op-…`, lower-case letters, digits and `-` (ulids and UUIDs both fit). */
const ID = /^(vm|op)-[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Linux interface names: at most 15 characters, no `/` or spaces. */
const BRIDGE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;
const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;
/** A libvirt URI: scheme, `://`, then no spaces, quotes or shell-ish characters. */
const URI = /^[a-z][a-z0-9+.-]*:\/\/[A-Za-z0-9._~:/?=&%@+[\],-]*$/;
/** One path segment: no `.`/`..`, no spaces, does not start with `-`. */
const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

export function assertVmId(value: string): string {
  check(ID.test(value) && value.startsWith("vm-"), `not a vm id: ${JSON.stringify(value)}`);
  return value;
}

export function assertOpId(value: string): string {
  check(ID.test(value) && value.startsWith("op-"), `not an op id: ${JSON.stringify(value)}`);
  return value;
}

/** True for a vm id the driver could have made a domain for. */
export const isVmId = (value: string): boolean => ID.test(value) && value.startsWith("vm-");

/** Lower-case 8-4-4-4-12 hex, as libvirt prints it. */
export function assertUuid(value: string): string {
  check(UUID.test(value), `not a lower-case UUID: ${JSON.stringify(value)}`);
  return value;
}

export const isUuid = (value: string): boolean => UUID.test(value);

export function assertBridge(value: string): string {
  check(BRIDGE.test(value), `not a bridge name: ${JSON.stringify(value)}`);
  return value;
}

export function assertMac(value: string): string {
  check(MAC.test(value), `not a lower-case MAC address: ${JSON.stringify(value)}`);
  // The low bit of the first octet marks multicast, which no NIC may use.
  check((Number.parseInt(value.slice(0, 2), 16) & 1) === 0, `not a unicast MAC address: ${value}`);
  return value;
}

export function assertVlan(value: number): number {
  check(Number.isInteger(value) && value >= 1 && value <= 4094, `not a VLAN id (1..4094): ${value}`);
  return value;
}

export function assertUri(value: string, what = "URI"): string {
  check(value.length <= 1024 && URI.test(value), `not a safe ${what}: ${JSON.stringify(value)}`);
  return value;
}

/** An absolute, normalised path: `/a/b`, every segment plain (no `..`, no spaces, no leading `-`). */
export function assertAbsPath(value: string, what = "path"): string {
  const segments = value.split("/").slice(1);
  check(
    value.startsWith("/") &&
      value.length <= 1024 &&
      segments.length > 0 &&
      segments.every((s) => SEGMENT.test(s)),
    `not a safe absolute ${what}: ${JSON.stringify(value)}`,
  );
  return value;
}

/** `path` validated and inside `dir` (itself validated). */
export function assertPathUnder(path: string, dir: string, what = "path"): string {
  assertAbsPath(dir, "directory");
  assertAbsPath(path, what);
  check(path.startsWith(`${dir}/`), `${what} ${path} is not under ${dir}`);
  return path;
}

/** A file name (one segment). */
export function assertFileName(value: string, what = "file name"): string {
  check(value.length <= 255 && SEGMENT.test(value), `not a safe ${what}: ${JSON.stringify(value)}`);
  return value;
}
