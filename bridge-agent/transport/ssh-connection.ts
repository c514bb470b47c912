/**
 * The one SSH connection to a host, shared by all its commands. Connected lazily (on the first
 * command), kept open with keepalives, and connected again on demand after it drops. After a failed
 * attempt the next one waits an exponential, jittered, capped delay; every caller waiting meanwhile
 * shares that next attempt and gets its outcome (so callers never see a stale error, and a down host
 * sees at most one attempt per delay).
 */
import { readFile } from "node:fs/promises";
import { Client, type ConnectConfig } from "ssh2";
import { type Logger, silentLogger } from "../../shared/log.ts";
import { DriverError, DriverErrorCode } from "../drivers/errors.ts";
import { sleep } from "../sleep.ts";
import { backoffMs, hostKeyFingerprint, type SshHostConfig } from "./ssh-config.ts";
import { type ConnectContext, connectError, connectionLost } from "./ssh-errors.ts";

export type ConnectionState = "idle" | "connecting" | "ready" | "down" | "closed";

export type ConnectionStatus = {
  state: ConnectionState;
  /** Failed attempts since the last successful one. */
  failures: number;
  /** Why the last attempt failed (or the connection dropped), until the next success. */
  lastError?: DriverError;
  /** Successful connections so far (1 + reconnects). */
  connects: number;
  /** Times ssh2 asked for credentials, over all attempts (0 after a refused host key). */
  authAttempts: number;
};

export class SshConnection {
  private client: Client | undefined;
  private pending: Promise<Client> | undefined;
  private failures = 0;
  private nextAttemptAt = 0;
  private lastError: DriverError | undefined;
  private connects = 0;
  private authAttempts = 0;
  private closed = false;
  private readonly closing = new AbortController();

  private readonly hostId: string;
  private readonly address: string;
  private readonly cfg: SshHostConfig;
  private readonly log: Logger;

  constructor(hostId: string, address: string, cfg: SshHostConfig, log: Logger = silentLogger) {
    this.hostId = hostId;
    this.address = address;
    this.cfg = cfg;
    this.log = log;
  }

  status(): ConnectionStatus {
    const state: ConnectionState = this.closed
      ? "closed"
      : this.client
        ? "ready"
        : this.pending
          ? "connecting"
          : this.failures > 0 || this.lastError
            ? "down"
            : "idle";
    return {
      state,
      failures: this.failures,
      connects: this.connects,
      authAttempts: this.authAttempts,
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  /** The ready client, connecting first if needed. `signal` stops this caller's wait only. */
  get(signal?: AbortSignal): Promise<Client> {
    if (this.closed) return Promise.reject(this.closedError());
    if (this.client) return Promise.resolve(this.client);
    this.pending ??= this.attempt().finally(() => {
      this.pending = undefined;
    });
    // Waiters stop waiting when their own signal fires, or at once when the connection is closed.
    const stopWaiting = signal ? AbortSignal.any([signal, this.closing.signal]) : this.closing.signal;
    return untilAborted(this.pending, stopWaiting);
  }

  /** Ends the connection and any wait for one; safe twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort(this.closedError());
    const c = this.client;
    this.client = undefined;
    if (c) await endClient(c);
  }

  private closedError() {
    return new DriverError(DriverErrorCode.hostUnreachable, `SSH runner for ${this.hostId} is closed`);
  }

  private async attempt(): Promise<Client> {
    const wait = this.nextAttemptAt - Date.now();
    if (wait > 0) await sleep(wait, this.closing.signal);
    if (this.closed) throw this.closedError();
    try {
      const client = await this.connectOnce();
      if (this.closed) {
        await endClient(client);
        throw this.closedError();
      }
      this.failures = 0;
      this.nextAttemptAt = 0;
      this.lastError = undefined;
      this.connects++;
      this.client = client;
      this.log.info("ssh connected", { hostId: this.hostId, connects: this.connects });
      client.once("close", () => {
        if (this.client !== client) return;
        this.client = undefined;
        // The next command reconnects at once; only failed attempts back off.
        this.lastError = connectionLost(this.hostId, "connection closed");
        if (!this.closed) this.log.warn("ssh connection lost", { hostId: this.hostId });
      });
      return client;
    } catch (err) {
      const e = err instanceof DriverError ? err : connectError(err, this.ctx());
      if (this.closed) throw e;
      this.failures++;
      this.lastError = e;
      // A wrong host key will not fix itself soon: go straight to the longest delay.
      const failures = e.code === DriverErrorCode.hostKeyMismatch ? 64 : this.failures;
      const delay = backoffMs(failures, this.cfg.reconnectBaseMs, this.cfg.reconnectMaxMs);
      this.nextAttemptAt = Date.now() + delay;
      this.log.warn("ssh connect failed", {
        hostId: this.hostId,
        err: e,
        failures: this.failures,
        retryInMs: delay,
      });
      throw e;
    }
  }

  private ctx(): ConnectContext {
    return { hostId: this.hostId, target: `${this.cfg.user}@${this.address}:${this.cfg.port}` };
  }

  private async connectOnce(): Promise<Client> {
    const ctx = this.ctx();
    let privateKey: Buffer;
    try {
      privateKey = await readFile(this.cfg.privateKeyPath);
    } catch (cause) {
      throw new DriverError(
        DriverErrorCode.authFailed,
        `cannot read the SSH key ${this.cfg.privateKeyPath} for ${this.hostId}: ${(cause as Error).message}`,
        { cause },
      );
    }
    const expected = this.cfg.hostKeyFingerprint;
    let offered = false;
    const client = new Client();
    const config: ConnectConfig = {
      host: this.address,
      port: this.cfg.port,
      username: this.cfg.user,
      privateKey,
      readyTimeout: this.cfg.readyTimeoutMs,
      keepaliveInterval: this.cfg.keepaliveIntervalMs,
      keepaliveCountMax: this.cfg.keepaliveCountMax,
      // Called with the raw host key blob during key exchange, before any authentication:
      // returning false ends the handshake, so a wrong host never sees the agent's key.
      hostVerifier: (key: Buffer) => {
        const presented = hostKeyFingerprint(key);
        if (presented === expected) return true;
        ctx.mismatch = { expected, presented };
        return false;
      },
      // Public key only, offered once; counted so that "refused before authentication" is observable.
      authHandler: (_methodsLeft, _partialSuccess, next) => {
        if (offered) return next(false as unknown as "none"); // ssh2 takes false as "no more methods"
        offered = true;
        this.authAttempts++;
        next("publickey");
      },
    };
    return new Promise<Client>((resolve, reject) => {
      let settled = false;
      const fail = (err: unknown) => {
        if (settled) return;
        settled = true;
        client.end();
        reject(connectError(err, ctx));
      };
      client.once("ready", () => {
        if (settled) return;
        settled = true;
        resolve(client);
      });
      // Errors after `ready` are followed by `close`, which the caller watches; an error event
      // without a listener would crash the process.
      client.on("error", (err) => {
        if (settled) this.log.debug("ssh error", { hostId: this.hostId, err });
        else fail(err);
      });
      client.once("close", () => fail(new Error("connection closed during the handshake")));
      try {
        client.connect(config);
      } catch (err) {
        // Synchronous: a key that cannot be parsed
        settled = true;
        reject(
          new DriverError(
            DriverErrorCode.authFailed,
            `bad SSH key ${this.cfg.privateKeyPath}: ${(err as Error).message}`,
            { cause: err },
          ),
        );
      }
    });
  }
}

/** Ends a client and waits (briefly) for its socket to close. */
function endClient(client: Client): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 2_000);
    client.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
    client.end();
  });
}

function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
