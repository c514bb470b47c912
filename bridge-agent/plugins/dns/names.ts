/**
 * Validation of every name and address that goes into an update. Only names made of DNS labels
 * (letters, digits, '-'; 1 to 63 octets each; 253 characters in all) are ever encoded: text that
 * fails here never reaches the wire. Returned names are lowercase, without a trailing dot.
 */
import { DnsError, DnsErrorCode } from "./errors.ts";

/** A host label (RFC 952/1123): letters, digits and '-', not at either end. */
const HOST_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** TSIG key names may carry '_' too (BIND's `tsig-keygen` and common key names do). */
const KEY_LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
/** A decimal octet without leading zeros, 0 to 255. */
const OCTET = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
/** Longest name in presentation form: 255 octets on the wire, minus the root and first length. */
const MAX_NAME_CHARS = 253;

function invalid(what: string, text: unknown, why: string): DnsError {
  // JSON.stringify keeps control characters and quotes from forging log lines.
  const shown = typeof text === "string" ? JSON.stringify(text.slice(0, 80)) : typeof text;
  return new DnsError(DnsErrorCode.invalidName, `${what} ${shown} is not valid: ${why}`);
}

function labels(text: unknown, what: string, label: RegExp): string[] {
  if (typeof text !== "string" || text.length === 0) throw invalid(what, text, "empty");
  // Only ASCII reaches the regexes below: no Unicode case folding (e.g. 'K' KELVIN SIGN → 'k').
  if (!/^[\x21-\x7e]+$/.test(text)) throw invalid(what, text, "only printable ASCII, no spaces");
  const name = text.toLowerCase().replace(/\.$/, "");
  if (name.length > MAX_NAME_CHARS) throw invalid(what, text, `longer than ${MAX_NAME_CHARS} characters`);
  const parts = name.split(".");
  for (const part of parts) {
    if (!label.test(part)) throw invalid(what, text, `label ${JSON.stringify(part)} is not a DNS label`);
  }
  return parts;
}

/** A VM's host name: exactly one label (Usher's `Name`), e.g. `web-1`. */
export function hostLabel(text: unknown): string {
  const parts = labels(text, "host name", HOST_LABEL);
  if (parts.length !== 1) throw invalid("host name", text, "one label only, no dots");
  return parts[0]!;
}

/** `label.zone` for a validated label and zone, within the 253-character limit. */
export function fqdn(label: string, zone: string): string {
  const name = `${label}.${zone}`;
  if (name.length > MAX_NAME_CHARS) throw invalid("name", name, `longer than ${MAX_NAME_CHARS} characters`);
  return name;
}

/** A zone such as `usher.example.com` (a trailing dot is accepted; at least two labels). */
export function zoneName(text: unknown): string {
  const parts = labels(text, "zone", HOST_LABEL);
  if (parts.length < 2) throw invalid("zone", text, "at least two labels (no top-level zones)");
  return parts.join(".");
}

/** A TSIG key name such as `usher-agent` or `ddns_key.example.com`. */
export function keyName(text: unknown): string {
  return labels(text, "TSIG key name", KEY_LABEL).join(".");
}

/** An IPv4 address in strict dotted-quad form (no leading zeros, no shorthand). */
export function ipv4Octets(text: unknown): [number, number, number, number] {
  const parts = typeof text === "string" ? text.split(".") : [];
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) {
    const shown = typeof text === "string" ? JSON.stringify(text.slice(0, 40)) : typeof text;
    throw new DnsError(DnsErrorCode.invalidAddress, `${shown} is not a dotted-quad IPv4 address`);
  }
  return parts.map(Number) as [number, number, number, number];
}

/**
 * A reverse zone under in-addr.arpa on octet boundaries, e.g. `10.10.in-addr.arpa` for 10.10/16.
 * RFC 2317 classless zones (`0/26.2.0.192.in-addr.arpa`) are not supported.
 */
export function reverseZoneName(text: unknown): string {
  const parts = labels(text, "reverse zone", HOST_LABEL);
  const octets = parts.slice(0, -2);
  if (parts.slice(-2).join(".") !== "in-addr.arpa" || octets.length < 1 || octets.length > 3) {
    throw invalid("reverse zone", text, "1 to 3 octets under in-addr.arpa, e.g. 10.10.in-addr.arpa");
  }
  if (!octets.every((o) => OCTET.test(o))) throw invalid("reverse zone", text, "labels must be octets");
  return parts.join(".");
}

/** The in-addr.arpa name of an address: 10.10.0.5 → 5.0.10.10.in-addr.arpa. */
export function reverseName(octets: readonly number[]): string {
  return `${[...octets].reverse().join(".")}.in-addr.arpa`;
}

/** Whether `name` is `zone` or below it (both already validated, so lowercase and dotless). */
export function inZone(name: string, zone: string): boolean {
  return name === zone || name.endsWith(`.${zone}`);
}
