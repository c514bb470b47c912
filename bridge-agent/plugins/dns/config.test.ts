import { describe, expect, it } from "vitest";
import { DnsPluginConfig } from "./config.ts";

const secretBase64 = Buffer.alloc(32, 3).toString("base64");
const minimal = {
  server: { address: "192.0.2.53" },
  zone: "VMs.Example.com.",
  reverseZone: "10.10.in-addr.arpa",
  tsig: { name: "usher-agent", secretBase64 },
};

describe("DNS plugin config", () => {
  it("fills defaults and normalises names", () => {
    expect(DnsPluginConfig.parse(minimal)).toEqual({
      server: { address: "192.0.2.53", port: 53 },
      zone: "vms.example.com",
      reverseZone: "10.10.in-addr.arpa",
      ttlSeconds: 300,
      tsig: { name: "usher-agent", algorithm: "hmac-sha256", secretBase64 },
      timeoutMs: 5_000,
    });
    expect(
      DnsPluginConfig.parse({ ...minimal, server: { address: "2001:db8::53", port: 5353 } }).server,
    ).toEqual({
      address: "2001:db8::53",
      port: 5353,
    });
  });

  it.each([
    ["a host name as server", { server: { address: "ns1.example.com" } }],
    ["a bad zone", { zone: "vms example.com" }],
    ["a forward zone as reverse zone", { reverseZone: "example.com" }],
    ["another algorithm", { tsig: { name: "k", algorithm: "hmac-md5", secretBase64 } }],
    ["a short secret", { tsig: { name: "k", secretBase64: "c2hvcnQ=" } }],
    ["a secret that is not base64", { tsig: { name: "k", secretBase64: "not base64!" } }],
    ["an unknown field", { zones: ["x"] }],
    ["a TTL over a day", { ttlSeconds: 86_401 }],
  ])("refuses %s", (_why, patch) => {
    expect(DnsPluginConfig.safeParse({ ...minimal, ...patch }).success).toBe(false);
  });

  it("never echoes the secret in its errors", () => {
    const secret = "c2VjcmV0LXRvby1zaG9ydA"; // base64 without padding: refused
    const result = DnsPluginConfig.safeParse({ ...minimal, tsig: { name: "k", secretBase64: secret } });
    expect(result.success).toBe(false);
    expect(JSON.stringify(result.error)).not.toContain(secret);
  });
});
