/**
 * Configuration of the DNS plugin's on-premise half: where updates go, which zones the VMs' A and
 * PTR records live in, and the TSIG key that signs them. Parsed where the agent reads its config.
 */
import { z } from "zod";
import { keyName, reverseZoneName, zoneName } from "./names.ts";

/** Runs a names.ts validator as a zod transform: the parsed value is the normalised name. */
function dnsName(validate: (text: unknown) => string) {
  return z.string().transform((text, ctx) => {
    try {
      return validate(text);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: err instanceof Error ? err.message : String(err) });
      return z.NEVER;
    }
  });
}

export const DnsServerConfig = z.strictObject({
  /** IP address of the primary nameserver for both zones (a literal: no lookup to find it). */
  address: z.union([z.ipv4(), z.ipv6()]),
  /** Its DNS port, UDP and TCP. */
  port: z.number().int().min(1).max(65_535).default(53),
});
export type DnsServerConfig = z.infer<typeof DnsServerConfig>;

export const TsigKeyConfig = z.strictObject({
  /** The key's name as the server knows it (BIND: `key "NAME" { ... }`). */
  name: dnsName(keyName),
  /** Only HMAC-SHA256 (RFC 8945 §6: the mandatory algorithm). */
  algorithm: z.literal("hmac-sha256").default("hmac-sha256"),
  /** The shared secret, base64 (BIND's `secret "..."`); at least 16 octets once decoded. */
  secretBase64: z
    .base64()
    .refine((s) => Buffer.from(s, "base64").length >= 16, "the secret must be at least 16 octets"),
});
export type TsigKeyConfig = z.infer<typeof TsigKeyConfig>;

/** What the update client needs: the server, the key and the time limit. */
export const DnsUpdaterConfig = z.strictObject({
  server: DnsServerConfig,
  tsig: TsigKeyConfig,
  /** Time limit of one exchange with the server (a UDP request is resent twice within it). */
  timeoutMs: z.number().int().min(100).max(60_000).default(5_000),
});
export type DnsUpdaterConfig = z.input<typeof DnsUpdaterConfig>;

export const DnsPluginConfig = z.strictObject({
  ...DnsUpdaterConfig.shape,
  /** Forward zone of the VMs' A records: VM `web-1` gets `web-1.<zone>`. */
  zone: dnsName(zoneName),
  /** Reverse zone of their PTR records, e.g. `10.10.in-addr.arpa` for 10.10.0.0/16. */
  reverseZone: dnsName(reverseZoneName),
  /** TTL of the records added. */
  ttlSeconds: z.number().int().min(0).max(86_400).default(300),
});
export type DnsPluginConfig = z.infer<typeof DnsPluginConfig>;
