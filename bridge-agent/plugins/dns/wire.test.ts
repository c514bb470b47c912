import { describe, expect, it } from "vitest";
import { DnsErrorCode } from "./errors.ts";
import { signMessage } from "./tsig.ts";
import { planAddVmRecords, planRemoveVmRecords } from "./update.ts";
import { decodeResponse, encodeName, encodeUpdate, RrClass, RrType } from "./wire.ts";

/** Reads an uncompressed update back (test-only: our encoder never compresses). */
function parse(buf: Buffer) {
  let at = 12;
  const name = () => {
    const labels: string[] = [];
    for (let len = buf[at]!; len !== 0; len = buf[at]!) {
      labels.push(buf.toString("ascii", at + 1, at + 1 + len));
      at += len + 1;
    }
    at += 1;
    return labels.join(".");
  };
  const rr = () => {
    const owner = name();
    const [type, klass, ttl, rdlength] = [
      buf.readUInt16BE(at),
      buf.readUInt16BE(at + 2),
      buf.readUInt32BE(at + 4),
      buf.readUInt16BE(at + 8),
    ];
    const rdata = buf.subarray(at + 10, at + 10 + rdlength);
    at += 10 + rdlength;
    return { name: owner, type, class: klass, ttl, rdata: rdata.toString("hex") };
  };
  const counts = [4, 6, 8, 10].map((o) => buf.readUInt16BE(o));
  const flags = buf.readUInt16BE(2);
  const zone = { name: name(), type: buf.readUInt16BE(at), class: buf.readUInt16BE(at + 2) };
  at += 4;
  const prerequisites = Array.from({ length: counts[1]! }, rr);
  const updates = Array.from({ length: counts[2]! }, rr);
  const additionals = Array.from({ length: counts[3]! }, rr);
  return {
    id: buf.readUInt16BE(0),
    flags,
    counts,
    zone,
    prerequisites,
    updates,
    additionals,
    rest: buf.length - at,
  };
}

const vm = { zone: "usher.test", reverseZone: "10.10.in-addr.arpa", name: "web-1", ipv4: "10.10.0.5" };

describe("UPDATE messages", () => {
  it("encodes names uncompressed", () => {
    expect(encodeName("web-1.usher.test").toString("hex")).toBe("057765622d31057573686572047465737400");
    expect(encodeName(".").toString("hex")).toBe("00");
  });

  it("adds: zone SOA, a no-CNAME prerequisite, an RRset delete and an add, per zone", () => {
    const [forward, reverse] = planAddVmRecords({ ...vm, ttl: 300 });
    const m = parse(encodeUpdate({ id: 0x1234, ...forward! }));
    expect(m.id).toBe(0x1234);
    expect(m.flags).toBe(5 << 11); // opcode UPDATE, QR 0
    expect(m.counts).toEqual([1, 1, 2, 0]); // ZOCOUNT PRCOUNT UPCOUNT ADCOUNT
    expect(m.zone).toEqual({ name: "usher.test", type: RrType.SOA, class: RrClass.IN });
    expect(m.prerequisites).toEqual([
      { name: "web-1.usher.test", type: RrType.CNAME, class: RrClass.NONE, ttl: 0, rdata: "" },
    ]);
    expect(m.updates).toEqual([
      { name: "web-1.usher.test", type: RrType.A, class: RrClass.ANY, ttl: 0, rdata: "" },
      { name: "web-1.usher.test", type: RrType.A, class: RrClass.IN, ttl: 300, rdata: "0a0a0005" },
    ]);
    expect(m.rest).toBe(0);

    const r = parse(encodeUpdate({ id: 1, ...reverse! }));
    expect(r.zone.name).toBe("10.10.in-addr.arpa");
    expect(r.updates[1]).toEqual({
      name: "5.0.10.10.in-addr.arpa",
      type: RrType.PTR,
      class: RrClass.IN,
      ttl: 300,
      rdata: encodeName("web-1.usher.test").toString("hex"),
    });
  });

  it("removes exactly the VM's RRs (class NONE), with no prerequisite", () => {
    const [forward, reverse] = planRemoveVmRecords(vm);
    const m = parse(encodeUpdate({ id: 2, ...forward! }));
    expect(m.counts).toEqual([1, 0, 1, 0]);
    expect(m.updates).toEqual([
      { name: "web-1.usher.test", type: RrType.A, class: RrClass.NONE, ttl: 0, rdata: "0a0a0005" },
    ]);
    expect(parse(encodeUpdate({ id: 3, ...reverse! })).updates[0]).toMatchObject({
      name: "5.0.10.10.in-addr.arpa",
      type: RrType.PTR,
      class: RrClass.NONE,
    });
  });

  it("appends the TSIG RR last and counts it in ARCOUNT", () => {
    const [forward] = planAddVmRecords({ ...vm, ttl: 60 });
    const unsigned = encodeUpdate({ id: 7, ...forward! });
    const key = { name: "usher-test", secret: Buffer.alloc(32, 1) };
    const { wire, mac } = signMessage(unsigned, key, { timeSigned: 1_700_000_000 });
    const m = parse(wire);
    expect(m.counts).toEqual([1, 1, 2, 1]);
    expect(m.additionals[0]).toMatchObject({
      name: "usher-test",
      type: RrType.TSIG,
      class: RrClass.ANY,
      ttl: 0,
    });
    expect(m.additionals[0]!.rdata).toContain(mac.toString("hex"));
    expect(wire.subarray(12).toString("hex").startsWith(unsigned.subarray(12).toString("hex"))).toBe(true);
    expect(m.rest).toBe(0);
  });

  it("refuses hostile input before building anything", () => {
    expect(() => planAddVmRecords({ ...vm, name: "web-1.other.test", ttl: 60 })).toThrow(
      expect.objectContaining({ code: DnsErrorCode.invalidName }),
    );
    expect(() => planAddVmRecords({ ...vm, ttl: -1 })).toThrow(
      expect.objectContaining({ code: DnsErrorCode.invalidTtl }),
    );
    expect(() => planRemoveVmRecords({ ...vm, ipv4: "10.11.0.5" })).toThrow(
      expect.objectContaining({ code: DnsErrorCode.notZone }),
    );
  });

  it("reports a malformed response as dns_bad_response", () => {
    for (const junk of [Buffer.alloc(5), Buffer.from("8000800000010000000000000377", "hex")]) {
      expect(() => decodeResponse(junk)).toThrow(expect.objectContaining({ code: DnsErrorCode.badResponse }));
    }
  });
});
