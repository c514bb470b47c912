import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DnsError, DnsErrorCode } from "./errors.ts";
import {
  fqdn,
  hostLabel,
  inZone,
  ipv4Octets,
  keyName,
  reverseName,
  reverseZoneName,
  zoneName,
} from "./names.ts";

const invalidName = expect.objectContaining({ code: DnsErrorCode.invalidName });

describe("DNS name validation", () => {
  it("accepts host labels and lowercases them", () => {
    expect(hostLabel("web-1")).toBe("web-1");
    expect(hostLabel("Web-1")).toBe("web-1");
    expect(hostLabel("a".repeat(63))).toBe("a".repeat(63));
    expect(hostLabel("0")).toBe("0");
  });

  it.each([
    ["empty", ""],
    ["two labels", "web-1.evil.com"],
    ["space", "web 1"],
    ["newline (a second nsupdate command)", "web\nupdate delete usher.test SOA"],
    ["NUL", "web\u0000"],
    ["shell", "web;rm"],
    ["wildcard", "*"],
    ["underscore", "_srv"],
    ["leading hyphen", "-web"],
    ["trailing hyphen", "web-"],
    ["too long", "a".repeat(64)],
    ["non-ASCII", "wéb"],
    ["fullwidth letters", "ｗｅｂ"],
    ["Kelvin sign (lowercases to k)", "\u212aube"],
    ["escaped dot", "web\\.1"],
    ["root", "."],
    ["dots only", ".."],
  ])("refuses a host name with %s", (_why, text) => {
    expect(() => hostLabel(text)).toThrow(invalidName);
  });

  it("refuses what is not a string", () => {
    for (const v of [undefined, null, 42, {}, ["web"]]) expect(() => hostLabel(v)).toThrow(DnsError);
  });

  it("only ever returns lowercase LDH labels (property)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80, unit: "binary" }), (text) => {
        try {
          return /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(hostLabel(text));
        } catch (err) {
          return err instanceof DnsError && err.code === DnsErrorCode.invalidName;
        }
      }),
    );
  });

  it("checks zones, key names and the 253-character limit", () => {
    expect(zoneName("Usher.Example.com.")).toBe("usher.example.com");
    expect(() => zoneName("com")).toThrow(invalidName);
    expect(() => zoneName("usher..test")).toThrow(invalidName);
    expect(() => zoneName("a".repeat(60).concat(".").repeat(5).concat("test"))).toThrow(invalidName);
    expect(keyName("ddns_key.example.com")).toBe("ddns_key.example.com");
    expect(() => keyName("key name")).toThrow(invalidName);
    const zone = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.test`; // 196 characters
    expect(fqdn("x".repeat(56), zone)).toHaveLength(253);
    expect(() => fqdn("x".repeat(57), zone)).toThrow(invalidName);
  });

  it("checks reverse zones and builds in-addr.arpa names", () => {
    expect(reverseZoneName("10.10.in-addr.arpa.")).toBe("10.10.in-addr.arpa");
    for (const bad of [
      "in-addr.arpa",
      "256.in-addr.arpa",
      "010.in-addr.arpa",
      "a.in-addr.arpa",
      "10.ip6.arpa",
    ]) {
      expect(() => reverseZoneName(bad)).toThrow(invalidName);
    }
    expect(() => reverseZoneName("0/26.2.0.192.in-addr.arpa")).toThrow(invalidName);
    expect(reverseName([10, 10, 0, 5])).toBe("5.0.10.10.in-addr.arpa");
    expect(inZone("5.0.10.10.in-addr.arpa", "10.10.in-addr.arpa")).toBe(true);
    expect(inZone("5.0.10.110.in-addr.arpa", "10.in-addr.arpa")).toBe(false);
  });

  it("takes only strict dotted-quad IPv4 addresses", () => {
    expect(ipv4Octets("10.10.0.5")).toEqual([10, 10, 0, 5]);
    for (const bad of [
      "10.10.0",
      "10.10.0.256",
      "10.10.0.05",
      "10.10.0.5 ",
      "0x0a.0.0.1",
      "::1",
      "10.10.0.5;x",
    ]) {
      expect(() => ipv4Octets(bad)).toThrow(expect.objectContaining({ code: DnsErrorCode.invalidAddress }));
    }
  });
});
