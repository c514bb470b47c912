/**
 * Errors of the DNS plugin's update client. Every failure is a `DnsError` with one of these stable
 * codes; callers branch on `code`, never on the message.
 */
export const DnsErrorCode = {
  /** A name, zone or key name is not made of DNS labels; nothing was sent. */
  invalidName: "dns_invalid_name",
  /** The address is not a dotted-quad IPv4 address; nothing was sent. */
  invalidAddress: "dns_invalid_address",
  /** The TTL is not a whole number of seconds from 0 to 2^31-1; nothing was sent. */
  invalidTtl: "dns_invalid_ttl",
  /** The name is outside the zone (checked here, or RCODE NOTZONE from the server). */
  notZone: "dns_not_zone",
  /** RCODE REFUSED: policy forbids this update (e.g. the key is not in the zone's allow-update). */
  refused: "dns_refused",
  /** RCODE NOTAUTH without a TSIG error: the server is not authoritative (primary) for the zone. */
  notAuth: "dns_not_auth",
  /** TSIG error BADKEY: the server does not know the key name or algorithm. */
  badKey: "dns_bad_key",
  /** TSIG error BADSIG: the MAC did not verify, usually a wrong secret. */
  badSig: "dns_bad_sig",
  /** TSIG error BADTIME: the clocks of the agent and the server differ by more than the fudge. */
  badTime: "dns_bad_time",
  /** A prerequisite did not hold (RCODE YXDOMAIN, YXRRSET, NXDOMAIN or NXRRSET). */
  prerequisiteFailed: "dns_prerequisite_failed",
  /** RCODE SERVFAIL. */
  serverFailure: "dns_server_failure",
  /** RCODE FORMERR or NOTIMP: the server did not understand the update. */
  rejected: "dns_rejected",
  /** The response is malformed, unsigned, or its TSIG MAC does not verify: it was not trusted. */
  badResponse: "dns_bad_response",
  /** No response within `timeoutMs`. */
  timeout: "dns_timeout",
  /** The server could not be reached (socket error, connection refused or reset). */
  unreachable: "dns_unreachable",
  /** The caller's AbortSignal fired before a response arrived. */
  aborted: "dns_aborted",
} as const;
export type DnsErrorCode = (typeof DnsErrorCode)[keyof typeof DnsErrorCode];

export class DnsError extends Error {
  override name = "DnsError";
  readonly code: DnsErrorCode;
  constructor(code: DnsErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
  toInfo(): { code: string; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** True when `err` is a DnsError with `code` (any code when omitted). */
export function isDnsError(err: unknown, code?: DnsErrorCode): err is DnsError {
  return err instanceof DnsError && (code === undefined || err.code === code);
}
