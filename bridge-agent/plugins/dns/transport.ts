/**
 * One request/response exchange with the nameserver, over UDP or TCP (RFC 1035 §4.2; RFC 7766).
 * Both resolve with the first response whose ID matches the request's; nothing here interprets it.
 */
import { createSocket } from "node:dgram";
import { isIPv6, Socket } from "node:net";
import { DnsError, DnsErrorCode } from "./errors.ts";
import { peekHeader } from "./wire.ts";

export type Endpoint = { address: string; port: number };
export type ExchangeOptions = { timeoutMs: number; signal?: AbortSignal };

/** How often an unanswered UDP request is sent again within its time limit. */
const UDP_RETRIES = 2;

type Settle = { resolve: (b: Buffer) => void; reject: (e: unknown) => void };

/** Wires time limit, abort and cleanup around one exchange. */
function withLimits(
  server: Endpoint,
  opts: ExchangeOptions,
  run: (settle: Settle) => () => void,
): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    let cleanup = () => {};
    let done = false;
    const finish = (fn: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      cleanup();
      fn();
    };
    const at = `${server.address}:${server.port}`;
    const timer = setTimeout(
      () =>
        finish(() =>
          reject(new DnsError(DnsErrorCode.timeout, `no answer from ${at} in ${opts.timeoutMs} ms`)),
        ),
      opts.timeoutMs,
    );
    const onAbort = () =>
      finish(() =>
        reject(new DnsError(DnsErrorCode.aborted, "DNS update aborted", { cause: opts.signal?.reason })),
      );
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    cleanup = run({
      resolve: (b) => finish(() => resolve(b)),
      reject: (e) =>
        finish(() =>
          reject(
            e instanceof DnsError ? e : new DnsError(DnsErrorCode.unreachable, `${at}: ${e}`, { cause: e }),
          ),
        ),
    });
    if (done) cleanup(); // settled while run() was still setting up
  });
}

/**
 * Sends `request` over UDP from a connected socket (the kernel drops datagrams from other
 * addresses), again after a third and two thirds of the time limit if unanswered, and ignores
 * datagrams that are not a response with the request's ID.
 */
export function udpExchange(server: Endpoint, request: Buffer, opts: ExchangeOptions): Promise<Buffer> {
  const id = request.readUInt16BE(0);
  return withLimits(server, opts, ({ resolve, reject }) => {
    const socket = createSocket(isIPv6(server.address) ? "udp6" : "udp4");
    const timers: NodeJS.Timeout[] = [];
    let closed = false;
    const send = () => {
      if (!closed) socket.send(request, (err) => err && reject(err));
    };
    socket.on("error", reject);
    socket.on("message", (msg) => {
      const h = peekHeader(msg);
      if (h?.isResponse && h.id === id) resolve(msg);
    });
    socket.connect(server.port, server.address, () => {
      if (closed) return;
      send();
      for (let i = 1; i <= UDP_RETRIES; i++) {
        timers.push(setTimeout(send, (opts.timeoutMs * i) / (UDP_RETRIES + 1)));
      }
    });
    return () => {
      closed = true;
      for (const t of timers) clearTimeout(t);
      socket.removeAllListeners("message");
      socket.on("error", () => {});
      socket.close();
    };
  });
}

/** Sends `request` over TCP with its two-octet length prefix and reads one framed response. */
export function tcpExchange(server: Endpoint, request: Buffer, opts: ExchangeOptions): Promise<Buffer> {
  const id = request.readUInt16BE(0);
  return withLimits(server, opts, ({ resolve, reject }) => {
    const socket = new Socket();
    let received = Buffer.alloc(0);
    socket.on("error", reject);
    socket.on("close", () => reject(new Error("connection closed before a full response")));
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 2) return;
      const length = received.readUInt16BE(0);
      if (received.length < 2 + length) return;
      const msg = received.subarray(2, 2 + length);
      const h = peekHeader(msg);
      if (h?.isResponse && h.id === id) resolve(msg);
      else reject(new DnsError(DnsErrorCode.badResponse, "TCP response does not match the request"));
    });
    socket.connect(server.port, server.address, () => {
      const length = Buffer.alloc(2);
      length.writeUInt16BE(request.length);
      socket.write(Buffer.concat([length, request]));
    });
    return () => {
      socket.removeAllListeners("close");
      socket.on("error", () => {});
      socket.destroy();
    };
  });
}
