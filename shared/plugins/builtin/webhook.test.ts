import { createHmac } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../log.ts";
import type { Deps } from "../../services/context.ts";
import type { Notice } from "../types.ts";
import { webhook } from "./webhook.ts";

type Received = { headers: IncomingMessage["headers"]; body: string };

describe("webhook plugin", () => {
  let server: Server;
  let url: string;
  const received: Received[] = [];
  let answer = 204;

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => {
        received.push({ headers: req.headers, body });
        res.writeHead(answer).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const notice: Notice = {
    event: "start",
    eventId: "ev-1",
    type: "op.succeeded",
    subject: "VM#vm-1",
    project: "p",
    data: { action: "start" },
    at: "2026-11-25T00:00:00.000Z",
    attempt: 0,
  };
  const ctx = { deps: {} as Deps, log: silentLogger, signal: new AbortController().signal };

  it("subscribes to the events it is given and nothing else", () => {
    const p = webhook({ url: "http://127.0.0.1:1/", events: ["start", "host_down"], secret: "s" });
    expect(Object.keys(p.hooks).sort()).toEqual(["host_down", "start"]);
  });

  it("posts the notice with an HMAC the receiver can check", async () => {
    answer = 204;
    const p = webhook({ url, events: ["start"], secret: "sekret" });
    await p.hooks.start?.(ctx, notice);
    const got = received.at(-1)!;
    expect(JSON.parse(got.body)).toEqual(notice);
    expect(got.headers["x-usher-event"]).toBe("start");
    expect(got.headers["x-usher-delivery"]).toBe("ev-1:start");
    const mac = createHmac("sha256", "sekret").update(got.body).digest("hex");
    expect(got.headers["x-usher-signature"]).toBe(`sha256=${mac}`);
  });

  it("gives each notification of one event its own delivery id, the same on every retry", async () => {
    answer = 204;
    const p = webhook({ url, events: ["start", "state_change"], secret: "s" });
    await p.hooks.start?.(ctx, notice);
    await p.hooks.state_change?.(ctx, { ...notice, event: "state_change" });
    await p.hooks.state_change?.(ctx, { ...notice, event: "state_change", attempt: 1 });
    expect(received.slice(-3).map((r) => r.headers["x-usher-delivery"])).toEqual([
      "ev-1:start",
      "ev-1:state_change",
      "ev-1:state_change",
    ]);
  });

  it("throws on a non-2xx answer, so the outbox retries it", async () => {
    answer = 503;
    const p = webhook({ url, events: ["start"], secret: "s" });
    await expect(p.hooks.start?.(ctx, notice)).rejects.toThrow(/answered 503/);
  });

  it("refuses a bad URL or an empty secret at start-up", () => {
    expect(() => webhook({ url: "not a url", events: ["start"], secret: "s" })).toThrow();
    expect(() => webhook({ url: "file:///etc/passwd", events: ["start"], secret: "s" })).toThrow(/file:/);
    expect(() => webhook({ url, events: ["start"], secret: "" })).toThrow(/secret/);
  });
});
