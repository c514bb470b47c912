/**
 * The bridge agent: long-polls its site's command queue, runs verified commands on its hosts'
 * drivers (command.ts), and reports inventory on a period. `start()` and `stop()` are safe to call
 * twice; every pass of the loop re-arms itself, and a failed pass is logged and retried with backoff.
 */
import type { SQSClient } from "@aws-sdk/client-sqs";
import { createLogger, type Logger } from "../shared/log.ts";
import { importEd25519 } from "../shared/signing/index.ts";
import { type CommandDeps, handleCommand, type InFlight } from "./command.ts";
import type { AgentConfig } from "./config.ts";
import type { HypervisorDriver } from "./drivers/driver.ts";
import { createDriver } from "./drivers/registry.ts";
import { SimWorld } from "./drivers/sim-world.ts";
import { INVENTORY_MESSAGE_MAX_BYTES, inventoryParts } from "./inventory.ts";
import { DEFAULT_SEND_RETRY, Reporter, type RetryPolicy } from "./reporter.ts";
import { sleep } from "./sleep.ts";
import { createSqsClient, type ReceivedMessage, Sqs } from "./sqs.ts";
import { RunnerPool } from "./transport/pool.ts";

export type AgentDeps = {
  /** Where logs go; JSON lines on stdout at the config's level when absent. */
  logger?: Logger;
  /** The world of the sim hosts; a new one when absent (tests pass theirs to look inside). */
  simWorld?: SimWorld;
  /** An SQS client to use instead of one built from the config (it is not destroyed on stop). */
  sqsClient?: SQSClient;
  /** Retries of result sends. */
  sendRetry?: RetryPolicy;
  /** The largest message an inventory part may be, signed (INVENTORY_MESSAGE_MAX_BYTES when absent). */
  messageMaxBytes?: number;
};

/** The longest an inventory call may take before its host is reported unreachable. */
const INVENTORY_TIMEOUT_MS = 10_000;

/**
 * Hosts listed at once for an inventory. Each kvm or xen listing is an SSH session running a few
 * commands; a few dozen at once keeps a site of thousands of hosts to a minute or so without opening
 * thousands of sessions (and sockets, and buffers) at the same moment.
 */
const INVENTORY_CONCURRENCY = 32;

/** Inventory parts being signed and sent at once. */
const INVENTORY_SENDS_AT_ONCE = 4;

/** Hosts named one by one in the `agent started` line; a larger site is summed up by kind. */
const HOSTS_LOGGED = 50;

export class Agent {
  private readonly config: AgentConfig;
  private readonly log: Logger;
  private readonly simWorld: SimWorld;
  private readonly runners: RunnerPool;
  private readonly sqs: Sqs;
  private readonly ownsClient: boolean;
  private readonly sendRetry: RetryPolicy;
  private readonly messageMaxBytes: number;
  private readonly drivers = new Map<string, HypervisorDriver>();
  private readonly ops = new Map<string, { op: InFlight; done: Promise<void> }>();
  private readonly halt = new AbortController();
  private deps: CommandDeps | undefined;
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private loop: Promise<void> | undefined;
  private inventoryTimer: NodeJS.Timeout | undefined;
  private inventoryRun: Promise<void> | undefined;

  constructor(config: AgentConfig, deps: AgentDeps = {}) {
    this.config = config;
    const ids = { component: "bridge-agent", agentId: config.agentId, site: config.site };
    this.log = deps.logger ? deps.logger.child(ids) : createLogger(ids, { level: config.logLevel });
    this.simWorld = deps.simWorld ?? new SimWorld();
    this.runners = new RunnerPool(config.hosts, this.log);
    this.sqs = new Sqs(deps.sqsClient ?? createSqsClient(config));
    this.ownsClient = !deps.sqsClient;
    this.sendRetry = deps.sendRetry ?? DEFAULT_SEND_RETRY;
    this.messageMaxBytes = deps.messageMaxBytes ?? INVENTORY_MESSAGE_MAX_BYTES;
  }

  /** Commands being worked on right now. */
  get inFlight(): number {
    return this.ops.size;
  }

  /** Imports keys, makes a driver per host, then starts polling and reporting inventory. */
  start(): Promise<void> {
    this.starting ??= this.doStart();
    return this.starting;
  }

  /**
   * Stops receiving, waits up to shutdownGraceSeconds for operations in flight, hands the rest back
   * to the queue (visibility 0) and closes the drivers.
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStart(): Promise<void> {
    const controlPlaneKey = (await importKey(this.config.controlPlanePublicKey, "controlPlanePublicKey")).key;
    const signer = await importKey(this.config.signingKey, "signingKey");
    for (const host of this.config.hosts)
      this.drivers.set(host.id, createDriver(host, { simWorld: this.simWorld, runners: this.runners }));
    const reporter = new Reporter({
      sqs: this.sqs,
      queueUrl: this.config.sqs.resultsQueueUrl,
      site: this.config.site,
      signer,
      retry: this.sendRetry,
      maxMessageBytes: this.messageMaxBytes,
    });
    this.deps = {
      config: this.config,
      sqs: this.sqs,
      reporter,
      drivers: this.drivers,
      activeOps: new Set<string>(),
      controlPlaneKey,
      logger: this.log,
    };
    if (this.halt.signal.aborted) return; // stopped while starting
    this.inventoryTick();
    this.loop = this.pollLoop();
    const { hosts } = this.config;
    const byKind: Record<string, number> = {};
    for (const h of hosts) byKind[h.kind] = (byKind[h.kind] ?? 0) + 1;
    this.log.info("agent started", {
      hosts: hosts.length <= HOSTS_LOGGED ? hosts.map((h) => `${h.id}:${h.kind}`) : byKind,
    });
  }

  private async doStop(): Promise<void> {
    this.halt.abort(new Error("agent stopping"));
    await this.starting?.catch(() => {});
    clearTimeout(this.inventoryTimer);
    await this.loop;
    const graceOver = new AbortController();
    const grace = sleep(this.config.shutdownGraceSeconds * 1000, graceOver.signal).then(
      () => "grace over" as const,
      () => "drained" as const,
    );
    const drained = Promise.all([...this.ops.values()].map((o) => o.done)).then(() => "drained" as const);
    const outcome = await Promise.race([grace, drained]);
    graceOver.abort();
    if (outcome === "grace over") await this.handBack();
    await Promise.all([...this.ops.values()].map((o) => o.done));
    await this.inventoryRun;
    for (const driver of this.drivers.values())
      await driver.close().catch((err) => this.log.warn("driver close failed", { err }));
    await this.runners.close().catch((err) => this.log.warn("ssh runners close failed", { err }));
    if (this.ownsClient) this.sqs.close();
    this.log.info("agent stopped");
  }

  private async handBack(): Promise<void> {
    await Promise.all(
      [...this.ops.values()].map(async ({ op, done }) => {
        op.handedBack = true;
        op.abort.abort(new Error("agent stopping"));
        await done; // the handler stops extending visibility before the message is handed back
        try {
          await this.sqs.changeVisibility(this.config.sqs.commandQueueUrl, op.msg.receiptHandle, 0);
          this.log.warn("command handed back", { messageId: op.msg.messageId });
        } catch (err) {
          this.log.warn("command not handed back; it returns after its visibility timeout", { err });
        }
      }),
    );
  }

  private async pollLoop(): Promise<void> {
    let failures = 0;
    while (!this.halt.signal.aborted) {
      try {
        await this.pass();
        failures = 0;
      } catch (err) {
        if (this.halt.signal.aborted) break;
        failures++;
        this.log.error("receive failed", { err, failures });
        await sleep(Math.min(30_000, 500 * 2 ** Math.min(failures, 6)), this.halt.signal).catch(() => {});
      }
    }
  }

  /** One pass: wait for a free slot (backpressure), then receive at most as many commands as slots. */
  private async pass(): Promise<void> {
    const free = this.config.maxConcurrentOps - this.ops.size;
    if (free <= 0) {
      let onHalt = () => {};
      const halted = new Promise<void>((r) => {
        onHalt = r;
        this.halt.signal.addEventListener("abort", onHalt, { once: true });
      });
      await Promise.race([...[...this.ops.values()].map((o) => o.done), halted]);
      this.halt.signal.removeEventListener("abort", onHalt);
      return;
    }
    const messages = await this.sqs.receive(this.config.sqs.commandQueueUrl, {
      maxMessages: Math.min(10, free),
      waitSeconds: this.config.pollWaitSeconds,
      visibilityTimeoutSeconds: this.config.visibilityTimeoutSeconds,
      signal: this.halt.signal,
    });
    for (const msg of messages) this.track(msg);
  }

  private track(msg: ReceivedMessage): void {
    const deps = this.deps;
    if (!deps) return;
    const op: InFlight = { msg, abort: new AbortController(), handedBack: false };
    const done = handleCommand(op, deps)
      .catch((err) => this.log.error("command handling failed", { messageId: msg.messageId, err }))
      .finally(() => this.ops.delete(msg.receiptHandle));
    this.ops.set(msg.receiptHandle, { op, done });
  }

  /** Sends an inventory report now and re-arms itself every inventoryIntervalSeconds. */
  private inventoryTick(): void {
    if (this.halt.signal.aborted) return;
    this.inventoryRun = this.sendInventory().finally(() => {
      if (!this.halt.signal.aborted) {
        this.inventoryTimer = setTimeout(
          () => this.inventoryTick(),
          this.config.inventoryIntervalSeconds * 1000,
        );
      }
    });
  }

  /**
   * Lists the hosts and sends the inventory part by part as they fill. A part that cannot be sent is
   * lost, not retried at length: its hosts miss one heartbeat, and the next inventory carries them.
   */
  private async sendInventory(): Promise<void> {
    const deps = this.deps;
    if (!deps) return;
    const started = performance.now();
    let at: string | undefined;
    let hosts = 0;
    let parts = 0;
    let unsent = 0;
    try {
      const ids = { agentId: this.config.agentId, site: this.config.site };
      const opts = {
        timeoutMs: INVENTORY_TIMEOUT_MS,
        concurrency: INVENTORY_CONCURRENCY,
        messageMaxBytes: this.messageMaxBytes,
      };
      // A few parts in flight while the next ones are listed: each is a signature and a round trip.
      const sending = new Set<Promise<void>>();
      for await (const part of inventoryParts(this.drivers.values(), ids, opts)) {
        at = part.at;
        for (const h of part.hosts)
          if (!h.reachable) this.log.warn("host unreachable", { hostId: h.hostId, error: h.error });
        hosts += part.hosts.length;
        parts++;
        const sent: Promise<void> = deps.reporter
          .send(part, this.log, 2)
          .then(
            (ok) => {
              if (!ok) unsent++;
            },
            (err) => {
              unsent++;
              this.log.error("inventory part not signed", { err });
            },
          )
          .finally(() => sending.delete(sent));
        sending.add(sent);
        if (sending.size >= INVENTORY_SENDS_AT_ONCE) await Promise.race(sending);
        if (this.halt.signal.aborted) break; // a stopping agent does not wait for the rest of its hosts
      }
      await Promise.all(sending);
    } catch (err) {
      this.log.error("inventory failed", { err });
      return;
    }
    if (unsent > 0) this.log.warn("inventory parts not sent", { at, parts, unsent });
    // With its memory, for benchmarks of large sites (debug only: one line per interval).
    this.log.debug("inventory sent", {
      at,
      hosts,
      parts,
      ms: Math.round(performance.now() - started),
      memory: process.memoryUsage(),
    });
  }
}

async function importKey(
  jwk: AgentConfig["signingKey"] | AgentConfig["controlPlanePublicKey"],
  field: string,
) {
  try {
    return await importEd25519(jwk);
  } catch (cause) {
    throw new Error(`${field} is not a usable Ed25519 JWK: ${(cause as Error).message}`, { cause });
  }
}
