/**
 * RFC 2136 UPDATE messages on the wire. Encoding is done here because dns-packet (used below to
 * decode responses) cannot express an update: it has no class NONE (254), and it always writes
 * RDATA for typed records, where RRset deletes and prerequisites need RDLENGTH 0. Names are written
 * uncompressed, and only names that names.ts validated (lowercase ASCII labels) reach encodeName().
 */
import dnsPacket from "dns-packet";
import { DnsError, DnsErrorCode } from "./errors.ts";

export const RrType = { A: 1, CNAME: 5, SOA: 6, PTR: 12, TSIG: 250, ANY: 255 } as const;
export const RrClass = { IN: 1, NONE: 254, ANY: 255 } as const;
export const OPCODE_UPDATE = 5;
/** Largest request sent over UDP: RFC 1035's limit for messages without EDNS. */
export const MAX_UDP_MESSAGE = 512;
const HEADER_BYTES = 12;
const FLAG_QR = 0x8000;
const FLAG_TC = 0x0200;

/** One resource record; `rdata` is already in wire form (empty for deletes and prerequisites). */
export type Rr = { name: string; type: number; class: number; ttl: number; rdata: Buffer };

/** Uncompressed wire form of a validated name (`""` or `"."` is the root). */
export function encodeName(name: string): Buffer {
  const parts = name === "" || name === "." ? [] : name.replace(/\.$/, "").split(".");
  const out: Buffer[] = [];
  for (const p of parts) {
    const label = Buffer.from(p, "ascii");
    if (label.length === 0 || label.length > 63) throw new Error(`bad label in ${name}`);
    out.push(Buffer.from([label.length]), label);
  }
  out.push(Buffer.from([0]));
  return Buffer.concat(out);
}

export function aRdata(octets: readonly number[]): Buffer {
  return Buffer.from(octets);
}

export function ptrRdata(target: string): Buffer {
  return encodeName(target);
}

/** RFC 2136 §2.5.1: add an RR to an RRset (adding one that exists is a no-op on the server). */
export function addRr(name: string, type: number, ttl: number, rdata: Buffer): Rr {
  return { name, type, class: RrClass.IN, ttl, rdata };
}

/** RFC 2136 §2.5.2: delete an RRset (no-op when absent). */
export function deleteRrset(name: string, type: number): Rr {
  return { name, type, class: RrClass.ANY, ttl: 0, rdata: Buffer.alloc(0) };
}

/** RFC 2136 §2.5.4: delete one RR from an RRset (no-op when absent). */
export function deleteRr(name: string, type: number, rdata: Buffer): Rr {
  return { name, type, class: RrClass.NONE, ttl: 0, rdata };
}

/** RFC 2136 §2.4.3 prerequisite: no RRset of `type` at `name` (the server answers YXRRSET if one exists). */
export function rrsetAbsent(name: string, type: number): Rr {
  return { name, type, class: RrClass.NONE, ttl: 0, rdata: Buffer.alloc(0) };
}

export function encodeRr(rr: Rr): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(rr.type, 0);
  fixed.writeUInt16BE(rr.class, 2);
  fixed.writeUInt32BE(rr.ttl, 4);
  fixed.writeUInt16BE(rr.rdata.length, 8);
  return Buffer.concat([encodeName(rr.name), fixed, rr.rdata]);
}

export type UpdateMessage = { id: number; zone: string; prerequisites: Rr[]; updates: Rr[] };

/**
 * An unsigned UPDATE: the zone section (ZOCOUNT 1, type SOA) in place of the question, then the
 * prerequisite section (PRCOUNT, where queries have ANCOUNT) and the update section (UPCOUNT).
 */
export function encodeUpdate(m: UpdateMessage): Buffer {
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt16BE(m.id, 0);
  header.writeUInt16BE(OPCODE_UPDATE << 11, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(m.prerequisites.length, 6);
  header.writeUInt16BE(m.updates.length, 8);
  header.writeUInt16BE(0, 10);
  const zone = Buffer.alloc(4);
  zone.writeUInt16BE(RrType.SOA, 0);
  zone.writeUInt16BE(RrClass.IN, 2);
  return Buffer.concat([
    header,
    encodeName(m.zone),
    zone,
    ...m.prerequisites.map(encodeRr),
    ...m.updates.map(encodeRr),
  ]);
}

/** A TSIG RR as found in a response: owner name and raw RDATA (tsig.ts parses it). */
export type TsigRr = { name: string; rdata: Buffer };

export type Response = {
  id: number;
  opcode: number;
  rcode: number;
  truncated: boolean;
  /** The last additional record when it is a TSIG (RFC 8945 §5.1: TSIG must be last). */
  tsig?: TsigRr;
  /** The message without its TSIG RR and with ARCOUNT lowered: what the server's MAC covers. */
  unsigned?: Buffer;
};

/** Just enough of a datagram to match it with a request: id and QR (a response). */
export function peekHeader(buf: Buffer): { id: number; isResponse: boolean } | undefined {
  if (buf.length < HEADER_BYTES) return undefined;
  return { id: buf.readUInt16BE(0), isResponse: (buf.readUInt16BE(2) & FLAG_QR) !== 0 };
}

/** Decodes a response (dns-packet does the sections and name decompression); throws dns_bad_response. */
export function decodeResponse(buf: Buffer): Response {
  try {
    const packet = dnsPacket.decode(buf);
    const flags = buf.readUInt16BE(2);
    const response: Response = {
      id: buf.readUInt16BE(0),
      opcode: (flags >> 11) & 0xf,
      rcode: flags & 0xf,
      truncated: (flags & FLAG_TC) !== 0,
    };
    const last = packet.additionals?.at(-1);
    if (last?.type === "TSIG") {
      if (!Buffer.isBuffer(last.data)) throw new Error("TSIG without RDATA");
      // Decoding again with one additional fewer stops right where the TSIG RR starts.
      const unsigned = Buffer.from(buf);
      unsigned.writeUInt16BE(unsigned.readUInt16BE(10) - 1, 10);
      dnsPacket.decode(unsigned);
      response.unsigned = unsigned.subarray(0, dnsPacket.decode.bytes);
      response.tsig = { name: last.name.toLowerCase(), rdata: last.data };
    }
    return response;
  } catch (cause) {
    throw new DnsError(DnsErrorCode.badResponse, "malformed DNS response", { cause });
  }
}
