/**
 * SSH settings of one hypervisor host, and the OpenSSH fingerprint its host key is pinned to.
 */
import { createHash } from "node:crypto";
import { z } from "zod";

/** `SHA256:` and 43 characters of unpadded base64, as `ssh-keygen -lf` prints it. */
const Fingerprint = z
  .string()
  .regex(/^SHA256:[A-Za-z0-9+/]{43}$/, "expected an OpenSSH SHA256 fingerprint (`ssh-keygen -lf key.pub`)");

export const SshHostConfig = z.strictObject({
  /** Login user on the host. */
  user: z.string().min(1).max(64).default("root"),
  /** sshd's port. */
  port: z.number().int().min(1).max(65_535).default(22),
  /** The agent's private key (OpenSSH or PEM, unencrypted), read at each connection. */
  privateKeyPath: z.string().min(1),
  /** The host key the host must present (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`). */
  hostKeyFingerprint: Fingerprint,
  /** Commands (SSH channels) at once on the connection; more wait. Keep below sshd's MaxSessions (10). */
  maxChannels: z.number().int().min(1).max(64).default(8),
  /** Keepalive probe period on an idle connection; 0 turns keepalives off. */
  keepaliveIntervalMs: z.number().int().min(0).max(600_000).default(15_000),
  /** Unanswered keepalives after which the connection counts as dropped. */
  keepaliveCountMax: z.number().int().min(1).max(100).default(3),
  /** Limit on TCP connect plus SSH handshake and authentication. */
  readyTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
  /** First delay before connecting again after a failed attempt; doubles per failure (with jitter). */
  reconnectBaseMs: z.number().int().min(1).max(600_000).default(500),
  /** Largest delay between connection attempts. */
  reconnectMaxMs: z.number().int().min(1).max(3_600_000).default(30_000),
});
export type SshHostConfig = z.infer<typeof SshHostConfig>;

/** The OpenSSH fingerprint of a raw host key blob: `SHA256:` + unpadded base64 of its SHA-256. */
export function hostKeyFingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash("sha256").update(keyBlob).digest("base64").replace(/=+$/, "")}`;
}

/** Delay before attempt `failures + 1`: exponential, capped, with "equal jitter" (half fixed, half random). */
export function backoffMs(failures: number, baseMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(failures - 1, 0), 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
