/**
 * The SSH transport: runs argv on a hypervisor host over one pooled ssh2 connection per host.
 * Each command is one SSH channel (`exec`); at most `maxChannels` are open at once and the rest wait
 * in line. The host key is pinned; ssh2 errors become DriverErrors here.
 */
import type { Client } from "ssh2";
import type { z } from "zod";
import { type Logger, silentLogger } from "../../shared/log.ts";
import { DriverError, DriverErrorCode } from "../drivers/errors.ts";
import { sleep } from "../sleep.ts";
import type { CommandRunner, RunOptions, RunResult } from "./runner.ts";
import { SshHostConfig } from "./ssh-config.ts";
import { type ConnectionStatus, SshConnection } from "./ssh-connection.ts";
import { aborted, execCommand } from "./ssh-exec.ts";
import { ChannelSlots } from "./ssh-slots.ts";
import { wrappedCommandLine } from "./ssh-wrap.ts";

export { hostKeyFingerprint, SshHostConfig } from "./ssh-config.ts";

export type SshRunnerOptions = {
  /** The host's id (errors and logs). */
  hostId: string;
  /** sshd's host name or IP address. */
  address: string;
  /** SSH settings; parsed here, so defaults may be left out. */
  ssh: z.input<typeof SshHostConfig>;
  logger?: Logger;
  /** After a timeout or abort, how long a command has between SIGTERM and SIGKILL. */
  killGraceMs?: number;
};

export type SshRunnerStatus = ConnectionStatus & {
  /** Channels open now, commands waiting for one, and the most ever open at once. */
  channels: { open: number; waiting: number; peak: number; max: number };
};

/**
 * A CommandRunner for one host over SSH.
 *
 * - `run` waits for a free channel (FIFO, never failing for lack of one), then for the connection
 *   (connecting if needed; after failures, the next attempt is backed off), then runs the command.
 *   `signal` bounds all of that; `timeoutMs` counts from the moment the command started on the host.
 * - Failures are DriverErrors: `host_unreachable` (cannot connect, connection lost, runner closed),
 *   `auth_failed`, `host_key_mismatch`, `timeout`, `aborted`. A non-zero exit is a result, not an error;
 *   a command killed by a signal exits 128 + its number.
 * - A timed-out, aborted or closed-over command is killed on the host (TERM, then KILL after
 *   `killGraceMs`), through the wrapper described in ssh-wrap.ts.
 */
export class SshRunner implements CommandRunner {
  readonly hostId: string;
  private readonly conn: SshConnection;
  private readonly slots: ChannelSlots;
  private readonly killGraceMs: number;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Stops for the commands running now (see close()). */
  private readonly running = new Set<(why: DriverError) => void>();

  constructor(opts: SshRunnerOptions) {
    const cfg = SshHostConfig.parse(opts.ssh);
    this.hostId = opts.hostId;
    this.conn = new SshConnection(
      opts.hostId,
      opts.address,
      cfg,
      opts.logger?.child({ hostId: opts.hostId }) ?? silentLogger,
    );
    this.slots = new ChannelSlots(cfg.maxChannels);
    this.killGraceMs = opts.killGraceMs ?? 2_000;
  }

  /** Connection and channel state (for health reports and tests). */
  status(): SshRunnerStatus {
    const s = this.slots;
    return {
      ...this.conn.status(),
      channels: { open: s.inUse, waiting: s.waiting, peak: s.peak, max: s.max },
    };
  }

  async run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const line = wrappedCommandLine(argv);
    const { signal } = opts;
    if (this.closed) throw this.closedError();
    if (signal?.aborted) throw aborted(this.hostId, signal);
    const release = await this.slots.acquire(signal).catch((err) => {
      throw signal?.aborted ? aborted(this.hostId, signal) : err;
    });
    let client: Client;
    try {
      client = await this.conn.get(signal);
    } catch (err) {
      release();
      throw signal?.aborted ? aborted(this.hostId, signal) : err;
    }
    if (this.closed) {
      release(); // closed while connecting: do not start what close() would not see
      throw this.closedError();
    }
    return execCommand(client, line, argv, opts, {
      hostId: this.hostId,
      killGraceMs: this.killGraceMs,
      release,
      track: (stop) => {
        this.running.add(stop);
        return () => this.running.delete(stop);
      },
    });
  }

  /**
   * Fails waiting commands, kills running ones on the host (a command outlives its SSH connection
   * otherwise), waits up to the kill grace for their channels to close, then closes the connection.
   * Safe twice (the second call waits for the first).
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      const err = this.closedError();
      this.slots.failAll(err);
      for (const stop of this.running) stop(err);
      const deadline = Date.now() + this.killGraceMs + 500;
      while (this.running.size > 0 && Date.now() < deadline) await sleep(20);
      await this.conn.close();
    })();
    return this.closing;
  }

  private closedError() {
    return new DriverError(DriverErrorCode.hostUnreachable, `SSH runner for ${this.hostId} is closed`);
  }
}
