/**
 * TSIG known answers, recorded from BIND 9.18 (Debian 12): `nsupdate -y hmac-sha256:usher-test:…`
 * sent the request below to `named` through a recording UDP relay, and `named` answered. Our
 * signer must rebuild nsupdate's TSIG RR byte for byte, and our verifier must accept named's reply.
 */
import { describe, expect, it } from "vitest";
import { DnsErrorCode } from "./errors.ts";
import { parseTsigRdata, signMessage, type TsigKey, verifyResponse } from "./tsig.ts";
import { decodeResponse } from "./wire.ts";

const key: TsigKey = {
  name: "usher-test",
  secret: Buffer.from("fWxa4w7duG6I1rAFeu/KCFRVpx6BU1A5BHf/M0WmX68=", "base64"),
};
/** prereq nxrrset vm9.usher.test CNAME; update delete vm9.usher.test A; update add … 300 A 10.10.0.9 */
const request = Buffer.from(
  "9b4b280000010001000200010575736865720474657374000006000103766d39c00c000500fe000000000000c01c0001" +
    "00ff000000000000c01c000100010000012c00040a0a00090a75736865722d746573740000fa00ff00000000003d0b68" +
    "6d61632d7368613235360000006b066ad3012c0020651471824fa0ad816427c892690acaf7a197854303b88475f70f0b" +
    "b8406716609b4b00000000",
  "hex",
);
const response = Buffer.from(
  "9b4ba8000001000000000001057573686572047465737400000600010a75736865722d746573740000fa00ff00000000" +
    "003d0b686d61632d7368613235360000006b066ad3012c0020fb7ab9af437416ae56d9fd25e7f76388e77505fb572931" +
    "78610d86c55c1caf139b4b00000000",
  "hex",
);
const TIME_SIGNED = 0x6b066ad3;
const requestMac = Buffer.from("651471824fa0ad816427c892690acaf7a197854303b88475f70f0bb840671660", "hex");

/** The request as nsupdate built it before signing: without the TSIG RR, ARCOUNT 0. */
function unsignedRequest(): Buffer {
  const start = request.indexOf(Buffer.from("0a75736865722d746573740000fa", "hex"));
  const unsigned = Buffer.from(request.subarray(0, start));
  unsigned.writeUInt16BE(0, 10);
  return unsigned;
}

describe("TSIG HMAC-SHA256", () => {
  it("signs a request exactly as BIND's nsupdate does", () => {
    const signed = signMessage(unsignedRequest(), key, { timeSigned: TIME_SIGNED, fudge: 300 });
    expect(signed.mac.toString("hex")).toBe(requestMac.toString("hex"));
    expect(signed.wire.toString("hex")).toBe(request.toString("hex"));
  });

  it("signs a response exactly as named does (MAC over the request's MAC first)", () => {
    const unsigned = Buffer.from(response.subarray(0, 28)); // header + zone section
    unsigned.writeUInt16BE(0, 10);
    const signed = signMessage(unsigned, key, { timeSigned: TIME_SIGNED, fudge: 300, requestMac });
    expect(signed.wire.toString("hex")).toBe(response.toString("hex"));
  });

  it("parses the TSIG RDATA", () => {
    const r = decodeResponse(response);
    const t = parseTsigRdata(r.tsig!.rdata);
    expect(t).toMatchObject({ algorithm: "hmac-sha256", timeSigned: TIME_SIGNED, fudge: 300, error: 0 });
    expect(t.originalId).toBe(0x9b4b);
    expect(t.mac).toHaveLength(32);
  });

  it("verifies named's signed response", () => {
    const mac = requestMac;
    expect(() => verifyResponse(decodeResponse(response), key, mac, TIME_SIGNED + 5)).not.toThrow();
  });

  it("rejects a response that was altered, answers another request, or is signed with another key", () => {
    const mac = requestMac;
    const altered = Buffer.from(response);
    altered[3] = 0x05; // RCODE NOERROR → REFUSED
    expect(() => verifyResponse(decodeResponse(altered), key, mac, TIME_SIGNED)).toThrow(
      expect.objectContaining({ code: DnsErrorCode.badResponse }),
    );
    const otherMac = Buffer.from(mac);
    otherMac[0]! ^= 1;
    expect(() => verifyResponse(decodeResponse(response), key, otherMac, TIME_SIGNED)).toThrow(
      expect.objectContaining({ code: DnsErrorCode.badResponse }),
    );
    const otherKey = { ...key, secret: Buffer.alloc(32, 7) };
    expect(() => verifyResponse(decodeResponse(response), otherKey, mac, TIME_SIGNED)).toThrow(
      expect.objectContaining({ code: DnsErrorCode.badResponse }),
    );
    const renamed = { ...key, name: "usher-other" };
    expect(() => verifyResponse(decodeResponse(response), renamed, mac, TIME_SIGNED)).toThrow(
      expect.objectContaining({ code: DnsErrorCode.badResponse }),
    );
  });

  it("rejects a response signed outside the fudge, and an unsigned one", () => {
    const mac = requestMac;
    expect(() => verifyResponse(decodeResponse(response), key, mac, TIME_SIGNED + 301)).toThrow(
      expect.objectContaining({ code: DnsErrorCode.badTime }),
    );
    const unsigned = Buffer.from(response.subarray(0, 28)); // header + zone section
    unsigned.writeUInt16BE(0, 10);
    expect(() => verifyResponse(decodeResponse(unsigned), key, mac, TIME_SIGNED)).toThrow(
      expect.objectContaining({ code: DnsErrorCode.badResponse, message: "unsigned response (RCODE 0)" }),
    );
  });
});
