/**
 * The updater against a stand-in server on loopback (UDP and TCP on one port) that answers with
 * whatever a test asks for: truncation, every RCODE, unsigned or wrongly signed answers, silence.
 * The real nameserver (BIND) is in test/dns; this covers what BIND cannot be made to do on cue.
 */
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, type Server } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DnsErrorCode } from "./errors.ts";
import { parseTsigRdata, signMessage, type TsigKey } from "./tsig.ts";
import { createDnsUpdater } from "./update.ts";
import { encodeName } from "./wire.ts";

const secretBase64 = Buffer.alloc(32, 9).toString("base64");
const key: TsigKey = { name: "usher-test", secret: Buffer.from(secretBase64, "base64") };
const vm = {
  zone: "usher.test",
  reverseZone: "10.10.in-addr.arpa",
  name: "web-1",
  ipv4: "10.10.0.5",
  ttl: 60,
};

type Reply = { rcode?: number; truncated?: boolean; signWith?: TsigKey | null; id?: number };

/** A signed answer to `request`, as a server builds it (zone section echoed, TSIG last). */
function answer(request: Buffer, r: Reply): Buffer {
  const zoneEnd = request.indexOf(0, 12) + 5;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(r.id ?? request.readUInt16BE(0), 0);
  header.writeUInt16BE(0x8000 | (5 << 11) | (r.truncated ? 0x200 : 0) | (r.rcode ?? 0), 2);
  header.writeUInt16BE(1, 4);
  const unsigned = Buffer.concat([header, request.subarray(12, zoneEnd)]);
  const signer = r.signWith === undefined ? key : r.signWith;
  if (!signer) return unsigned;
  const owner = Buffer.concat([encodeName(key.name), Buffer.from("00fa00ff", "hex")]);
  const rdata = request.subarray(request.indexOf(owner) + owner.length - 4 + 10);
  const requestMac = parseTsigRdata(rdata).mac;
  return signMessage(unsigned, signer, { timeSigned: Math.floor(Date.now() / 1000), requestMac }).wire;
}

class StandIn {
  udp!: UdpSocket;
  tcp!: Server;
  port = 0;
  seen: { via: "udp" | "tcp"; request: Buffer }[] = [];
  /** What to answer; undefined: stay silent. */
  reply: (via: "udp" | "tcp", request: Buffer) => Buffer[] | undefined = (_via, req) => [answer(req, {})];

  async start(): Promise<void> {
    this.udp = createSocket("udp4");
    this.udp.on("message", (msg, from) => {
      this.seen.push({ via: "udp", request: msg });
      for (const out of this.reply("udp", msg) ?? []) this.udp.send(out, from.port, from.address);
    });
    await new Promise<void>((resolve) => this.udp.bind(0, "127.0.0.1", resolve));
    this.port = this.udp.address().port;
    this.tcp = createServer((conn) => {
      conn.once("data", (chunk) => {
        const request = chunk.subarray(2);
        this.seen.push({ via: "tcp", request });
        const out = this.reply("tcp", request)?.[0];
        if (!out) return;
        const length = Buffer.alloc(2);
        length.writeUInt16BE(out.length);
        // Split in two writes: the client must reassemble a framed message.
        conn.write(Buffer.concat([length, out.subarray(0, 5)]));
        setTimeout(() => conn.end(out.subarray(5)), 20);
      });
    });
    await new Promise<void>((resolve, reject) => {
      this.tcp.once("error", reject);
      this.tcp.listen(this.port, "127.0.0.1", resolve);
    });
  }

  async stop(): Promise<void> {
    this.udp.close();
    await new Promise((resolve) => this.tcp.close(resolve));
  }
}

describe("DNS updater against a stand-in server", () => {
  let server: StandIn;
  const updater = (timeoutMs = 1_000) =>
    createDnsUpdater({
      server: { address: "127.0.0.1", port: server.port },
      tsig: { name: "usher-test", algorithm: "hmac-sha256", secretBase64 },
      timeoutMs,
    });

  beforeEach(async () => {
    server = new StandIn();
    await server.start();
  });
  afterEach(() => server.stop());

  it("sends one signed UDP update per zone and accepts the signed answers", async () => {
    await updater().addVmRecords(vm);
    expect(server.seen.map((s) => s.via)).toEqual(["udp", "udp"]);
  });

  it("retries over TCP when the UDP answer is truncated", async () => {
    server.reply = (via, req) => [answer(req, { truncated: via === "udp" })];
    await updater().removeVmRecords(vm);
    expect(server.seen.map((s) => s.via)).toEqual(["udp", "tcp", "udp", "tcp"]);
  });

  it("sends an update over 512 octets by TCP straight away", async () => {
    const zone = `${"l".repeat(60)}.${"m".repeat(60)}.${"n".repeat(57)}.usher.test`;
    await updater().addVmRecords({ ...vm, zone, name: "v".repeat(60) });
    // The forward update is long; the reverse one (a short zone, a long PTR target) is not.
    expect(server.seen.map((s) => [s.via, s.request.length > 512])).toEqual([
      ["tcp", true],
      ["udp", false],
    ]);
  });

  it.each([
    [1, DnsErrorCode.rejected],
    [2, DnsErrorCode.serverFailure],
    [3, DnsErrorCode.prerequisiteFailed],
    [4, DnsErrorCode.rejected],
    [5, DnsErrorCode.refused],
    [7, DnsErrorCode.prerequisiteFailed],
    [8, DnsErrorCode.prerequisiteFailed],
    [9, DnsErrorCode.notAuth],
    [10, DnsErrorCode.notZone],
    [11, DnsErrorCode.rejected],
  ])("maps RCODE %i to %s", async (rcode, code) => {
    server.reply = (_via, req) => [answer(req, { rcode })];
    await expect(updater().addVmRecords(vm)).rejects.toMatchObject({ code });
  });

  it("does not trust an unsigned or wrongly signed answer", async () => {
    server.reply = (_via, req) => [answer(req, { signWith: null })];
    await expect(updater().addVmRecords(vm)).rejects.toMatchObject({ code: DnsErrorCode.badResponse });
    server.reply = (_via, req) => [answer(req, { signWith: { ...key, secret: Buffer.alloc(32, 1) } })];
    await expect(updater().addVmRecords(vm)).rejects.toMatchObject({ code: DnsErrorCode.badResponse });
  });

  it("ignores datagrams that answer another request", async () => {
    server.reply = (_via, req) => [answer(req, { id: req.readUInt16BE(0) ^ 1, rcode: 5 }), answer(req, {})];
    await updater().addVmRecords(vm);
  });

  it("times out with dns_timeout after resending twice", async () => {
    server.reply = () => undefined;
    const started = Date.now();
    await expect(updater(300).addVmRecords(vm)).rejects.toMatchObject({ code: DnsErrorCode.timeout });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(server.seen).toHaveLength(3);
  });

  it("stops with dns_aborted when the caller aborts", async () => {
    server.reply = () => undefined;
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("agent stopping")), 50);
    await expect(updater(5_000).addVmRecords(vm, { signal: controller.signal })).rejects.toMatchObject({
      code: DnsErrorCode.aborted,
    });
  });

  it("says dns_unreachable when nothing listens on the port", async () => {
    const port = server.port;
    await server.stop();
    server = new StandIn(); // for afterEach; the old port stays closed
    await server.start();
    const u = createDnsUpdater({
      server: { address: "127.0.0.1", port: port === server.port ? port + 1 : port },
      tsig: { name: "usher-test", algorithm: "hmac-sha256", secretBase64 },
      timeoutMs: 2_000,
    });
    await expect(u.addVmRecords(vm)).rejects.toMatchObject({ code: DnsErrorCode.unreachable });
  });

  it("refuses hostile names without sending anything", async () => {
    const u = updater();
    const hostile = [
      { ...vm, name: "web-1.usher.test. 0 ANY" },
      { ...vm, name: "x\nupdate delete usher.test" },
      { ...vm, name: "*" },
      { ...vm, zone: "usher.test\u0000.evil" },
      { ...vm, reverseZone: "in-addr.arpa" },
      { ...vm, ipv4: "10.10.0.5/8" },
    ];
    for (const records of hostile) {
      await expect(u.addVmRecords(records)).rejects.toMatchObject({ name: "DnsError" });
      await expect(u.removeVmRecords(records)).rejects.toMatchObject({ name: "DnsError" });
    }
    expect(server.seen).toHaveLength(0);
  });

  it("checks its options when created", () => {
    const base = { server: { address: "127.0.0.1", port: 53 }, timeoutMs: 1_000 };
    const bad = [
      { ...base, tsig: { name: "k", algorithm: "hmac-sha256" as const, secretBase64: "c2hvcnQ=" } },
      { ...base, tsig: { name: "bad key", algorithm: "hmac-sha256" as const, secretBase64 } },
      { ...base, tsig: { name: "k", algorithm: "hmac-md5" as "hmac-sha256", secretBase64 } },
      { ...base, server: { address: "ns.example.com", port: 53 }, tsig: { name: "k", secretBase64 } },
    ];
    for (const config of bad) expect(() => createDnsUpdater(config)).toThrow();
  });
});
