/**
 * TSIG (RFC 8945) with HMAC-SHA256: signing requests and verifying the server's signed responses.
 * The MAC covers the message as sent (without the TSIG RR) followed by the "TSIG variables"; a
 * response's MAC is computed over the request's MAC first, which binds the response to the request.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { DnsError, DnsErrorCode } from "./errors.ts";
import { encodeName, type Response, RrClass, RrType } from "./wire.ts";

export const HMAC_SHA256 = "hmac-sha256";
/** RFC 8945 §10: 300 seconds is the recommended fudge. */
export const DEFAULT_FUDGE_SECONDS = 300;
const MAC_BYTES = 32;

/** TSIG error codes (RFC 8945 §3) that this client tells apart. */
export const TsigError = { none: 0, badSig: 16, badKey: 17, badTime: 18, badTrunc: 22 } as const;

export type TsigKey = {
  /** Validated key name (names.ts keyName): lowercase, no trailing dot. */
  name: string;
  secret: Buffer;
};

export type TsigRdata = {
  algorithm: string;
  timeSigned: number;
  fudge: number;
  mac: Buffer;
  originalId: number;
  error: number;
  other: Buffer;
};

function uint48(seconds: number): Buffer {
  const b = Buffer.alloc(6);
  b.writeUIntBE(seconds, 0, 6);
  return b;
}

function u16(...values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 2);
  for (const [i, v] of values.entries()) b.writeUInt16BE(v, i * 2);
  return b;
}

/** RFC 8945 §4.3.3: name, class, TTL, algorithm, time, fudge, error and other data. */
function tsigVariables(key: TsigKey, t: Pick<TsigRdata, "timeSigned" | "fudge" | "error" | "other">): Buffer {
  return Buffer.concat([
    encodeName(key.name),
    u16(RrClass.ANY),
    Buffer.alloc(4), // TTL 0
    encodeName(HMAC_SHA256),
    uint48(t.timeSigned),
    u16(t.fudge, t.error, t.other.length),
    t.other,
  ]);
}

function hmac(key: TsigKey, ...parts: Buffer[]): Buffer {
  const h = createHmac("sha256", key.secret);
  for (const p of parts) h.update(p);
  return h.digest();
}

/**
 * Appends a TSIG RR to an encoded message and raises its ARCOUNT. Returns the signed message and
 * the MAC, which the response's verification needs. With `requestMac` it signs a response to that
 * request, as a server does (the agent only needs that to stand in for a server in tests).
 */
export function signMessage(
  message: Buffer,
  key: TsigKey,
  opts: { timeSigned: number; fudge?: number; requestMac?: Buffer },
): { wire: Buffer; mac: Buffer } {
  const vars = { timeSigned: opts.timeSigned, fudge: opts.fudge ?? DEFAULT_FUDGE_SECONDS, error: 0 };
  const prior = opts.requestMac ? [u16(opts.requestMac.length), opts.requestMac] : [];
  const mac = hmac(key, ...prior, message, tsigVariables(key, { ...vars, other: Buffer.alloc(0) }));
  const rdata = Buffer.concat([
    encodeName(HMAC_SHA256),
    uint48(vars.timeSigned),
    u16(vars.fudge, mac.length),
    mac,
    u16(message.readUInt16BE(0), vars.error, 0),
  ]);
  const rr = Buffer.concat([
    encodeName(key.name),
    u16(RrType.TSIG, RrClass.ANY),
    Buffer.alloc(4),
    u16(rdata.length),
    rdata,
  ]);
  const wire = Buffer.concat([message, rr]);
  wire.writeUInt16BE(wire.readUInt16BE(10) + 1, 10);
  return { wire, mac };
}

/** Parses TSIG RDATA; the algorithm name is never compressed (RFC 8945 §4.2). */
export function parseTsigRdata(rdata: Buffer): TsigRdata {
  let at = 0;
  const labels: string[] = [];
  for (let len = rdata[at]; len !== 0; len = rdata[at]) {
    if (len === undefined || len > 63) throw new Error("bad TSIG algorithm name");
    labels.push(rdata.toString("ascii", at + 1, at + 1 + len));
    at += len + 1;
  }
  at += 1;
  const timeSigned = rdata.readUIntBE(at, 6);
  const fudge = rdata.readUInt16BE(at + 6);
  const macSize = rdata.readUInt16BE(at + 8);
  const mac = rdata.subarray(at + 10, at + 10 + macSize);
  at += 10 + macSize;
  const originalId = rdata.readUInt16BE(at);
  const error = rdata.readUInt16BE(at + 2);
  const otherLen = rdata.readUInt16BE(at + 4);
  const other = rdata.subarray(at + 6, at + 6 + otherLen);
  if (mac.length !== macSize || other.length !== otherLen || at + 6 + otherLen !== rdata.length) {
    throw new Error("TSIG RDATA length mismatch");
  }
  return { algorithm: labels.join(".").toLowerCase(), timeSigned, fudge, mac, originalId, error, other };
}

/**
 * Checks a response to a request signed with `requestMac` (RFC 8945 §5.3.2 and §5.4). Throws:
 * dns_bad_key / dns_bad_sig when the server could not verify the request (it then cannot sign),
 * dns_bad_time for BADTIME or a response signed outside the fudge, dns_bad_response when the
 * response is unsigned, signed with another key, or its MAC does not verify.
 */
export function verifyResponse(
  response: Response,
  key: TsigKey,
  requestMac: Buffer,
  nowSeconds: number,
): void {
  if (!response.tsig || !response.unsigned) {
    throw new DnsError(DnsErrorCode.badResponse, `unsigned response (RCODE ${response.rcode})`);
  }
  let t: TsigRdata;
  try {
    t = parseTsigRdata(response.tsig.rdata);
  } catch (cause) {
    throw new DnsError(DnsErrorCode.badResponse, "malformed TSIG in response", { cause });
  }
  if (response.tsig.name.replace(/\.$/, "") !== key.name || t.algorithm !== HMAC_SHA256) {
    throw new DnsError(DnsErrorCode.badResponse, "response signed with another key or algorithm");
  }
  // The server could not check our MAC, so its answer carries none (RFC 8945 §5.3.2).
  if (t.error === TsigError.badKey) {
    throw new DnsError(DnsErrorCode.badKey, `server does not know TSIG key ${key.name} (${HMAC_SHA256})`);
  }
  if (t.error === TsigError.badSig) {
    throw new DnsError(DnsErrorCode.badSig, `server rejected the TSIG signature of key ${key.name}`);
  }
  const unsigned = Buffer.from(response.unsigned);
  unsigned.writeUInt16BE(t.originalId, 0);
  const expected = hmac(key, u16(requestMac.length), requestMac, unsigned, tsigVariables(key, t));
  // Truncated MACs (RFC 8945 §5.2.2.1) are not accepted: BIND sends the full 32 octets.
  if (t.mac.length !== MAC_BYTES || !timingSafeEqual(t.mac, expected)) {
    throw new DnsError(DnsErrorCode.badResponse, "response TSIG MAC does not verify");
  }
  if (t.error === TsigError.badTime) {
    const serverTime = t.other.length === 6 ? t.other.readUIntBE(0, 6) : undefined;
    throw new DnsError(
      DnsErrorCode.badTime,
      `server rejected the TSIG time: clocks differ by more than ${t.fudge} s (server time ${serverTime ?? "?"}, agent time ${nowSeconds})`,
    );
  }
  if (t.error !== TsigError.none) {
    throw new DnsError(DnsErrorCode.badResponse, `TSIG error ${t.error} in response`);
  }
  if (Math.abs(nowSeconds - t.timeSigned) > t.fudge) {
    throw new DnsError(DnsErrorCode.badTime, `response signed at ${t.timeSigned}, outside the fudge`);
  }
}
