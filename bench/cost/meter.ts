/**
 * Counts what the control plane asks of AWS: an SDK middleware on every DynamoDB and SQS client adds
 * `ReturnConsumedCapacity` and sums what DynamoDB reports (corrected to AWS's rules where DynamoDB
 * Local differs, see units.ts), counts SQS requests as AWS bills them (one per 64 KB chunk), and
 * files both under the "actor" whose code was running: a Lambda function (its invocations and wall
 * time counted by `invoke`), the agent on premises, or Lambda's SQS pollers.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { SQSClient } from "@aws-sdk/client-sqs";
import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import type { Deps } from "../../shared/services/context.ts";
import { awsLatencyMs, billedDynamoUnits, DYNAMO_READS, DYNAMO_WRITES, sqsBilledRequests } from "./units.ts";

/** The Lambda functions of a deployment. */
export const LAMBDAS = ["api", "scheduler", "results", "sweep", "notifier"] as const;
export type Lambda = (typeof LAMBDAS)[number];
/** Who made a call: a Lambda function, the on-premise agent, or Lambda's SQS pollers (event source mappings). */
export type Actor = Lambda | "agent" | "esm";

/** One Lambda invocation as measured here, and as it would be billed on AWS (see units.ts). */
export type Invocation = { fn: Lambda; wallMs: number; netMs: number; modeledMs: number };

export type Tally = {
  invocations: Invocation[];
  rru: number;
  wru: number;
  /** DynamoDB calls by command. */
  dynamoCalls: Record<string, number>;
  /** Billed SQS requests by actor and command ("ReceiveMessage (empty)" apart). */
  sqs: Record<string, number>;
  /** Reads of a whole site's hosts (the scheduler's snapshot) among the reads, and their units. */
  siteReads: number;
  siteReadRru: number;
  /** Writes refused by a condition: AWS bills them, DynamoDB Local reports no units for them. */
  refusedWrites: number;
  /** By actor: RRU, WRU and SQS requests, for the breakdown in the notes. */
  byActor: Partial<Record<Actor, { rru: number; wru: number; sqs: number }>>;
  /** With `trace`: every DynamoDB call with its units and the service frame that made it. */
  calls: { actor: Actor; command: string; units: number; table: number; indexes: number; at: string }[];
};

export const emptyTally = (): Tally => ({
  invocations: [],
  rru: 0,
  wru: 0,
  dynamoCalls: {},
  sqs: {},
  siteReads: 0,
  siteReadRru: 0,
  refusedWrites: 0,
  byActor: {},
  calls: [],
});

/**
 * An actor's calls in flight: the time any call was on the wire (`netMs`, overlaps counted once),
 * the calls' own times summed (`sumNetMs`), and the AWS latency assumed for them (`awsMs`).
 */
type Scope = {
  actor: Actor;
  netMs: number;
  sumNetMs: number;
  awsMs: number;
  inFlight: number;
  since: number;
};

const newScope = (actor: Actor): Scope => ({ actor, netMs: 0, sumNetMs: 0, awsMs: 0, inFlight: 0, since: 0 });

/** The service frame (shared/services/…:line) that made a call, for tracing waste. */
function callSite(): string {
  const frames = (new Error().stack ?? "").split("\n").slice(1);
  const mine = frames.find((f) => f.includes("/shared/services/") || f.includes("/shared/plugins/"));
  return (
    mine
      ?.trim()
      .replace(/^at /, "")
      .replace(/\(?file:\/\/.*?\/shared\//, "shared/")
      .replace(/\)$/, "") ?? "?"
  );
}

export class Meter {
  private readonly scope = new AsyncLocalStorage<Scope>();
  private tally = emptyTally();
  private readonly trace: boolean;
  private readonly instrumented = new WeakSet<object>();

  constructor(opts: { trace?: boolean } = {}) {
    this.trace = opts.trace ?? false;
  }

  /** Meters a control plane's DynamoDB and SQS clients. */
  instrument(deps: Deps): void {
    this.dynamo(deps.db.doc);
    this.sqs(deps.queues.sqs);
  }

  /**
   * Times the wire: innermost in the stack (after serializing, before parsing), so the SDK's own
   * work stays in the function's measured time, as it would on Lambda.
   */
  private timeWire(stack: DynamoDBDocumentClient["middlewareStack"] | SQSClient["middlewareStack"]): void {
    (stack as SQSClient["middlewareStack"]).add(
      (next) => async (args) => {
        const s = this.scope.getStore();
        if (!s) return next(args);
        const t0 = performance.now();
        if (s.inFlight++ === 0) s.since = t0;
        try {
          return await next(args);
        } finally {
          const t1 = performance.now();
          s.sumNetMs += t1 - t0;
          if (--s.inFlight === 0) s.netMs += t1 - s.since;
        }
      },
      { step: "deserialize", name: "usherCostWire", priority: "low" },
    );
  }

  dynamo(doc: DynamoDBDocumentClient): void {
    if (this.instrumented.has(doc)) return;
    this.instrumented.add(doc);
    this.timeWire(doc.middlewareStack);
    doc.middlewareStack.add(
      (next, context) => async (args) => {
        const command = (context.commandName ?? "?").replace(/Command$/, "");
        const input = args.input as Record<string, unknown>;
        const counted = DYNAMO_READS.has(command) || DYNAMO_WRITES.has(command);
        if (counted) input.ReturnConsumedCapacity = "INDEXES";
        const s = this.scope.getStore();
        if (s) s.awsMs += awsLatencyMs("dynamodb", command);
        try {
          const out = await next(args);
          if (counted)
            this.onDynamo(s, command, input, (out.output as { ConsumedCapacity?: unknown }).ConsumedCapacity);
          return out;
        } catch (err) {
          const name = (err as { name?: string }).name;
          if (name === "ConditionalCheckFailedException" || name === "TransactionCanceledException")
            this.onRefused(s, command, input);
          throw err;
        }
      },
      { step: "initialize", name: "usherCostMeter", priority: "high" },
    );
  }

  sqs(client: SQSClient): void {
    if (this.instrumented.has(client)) return;
    this.instrumented.add(client);
    this.timeWire(client.middlewareStack);
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const command = (context.commandName ?? "?").replace(/Command$/, "");
        const s = this.scope.getStore();
        if (s) s.awsMs += awsLatencyMs("sqs", command);
        const out = await next(args);
        const { requests, empty } = sqsBilledRequests(command, args.input, out.output);
        this.onSqs(s, empty ? `${command} (empty)` : command, requests);
        return out;
      },
      { step: "initialize", name: "usherCostMeter", priority: "high" },
    );
  }

  /** Runs one invocation of a Lambda function: its calls are its own, its wall time is measured. */
  async invoke<T>(fn: Lambda, body: () => Promise<T>): Promise<T> {
    const s = newScope(fn);
    const t0 = performance.now();
    try {
      return await this.scope.run(s, body);
    } finally {
      const wallMs = performance.now() - t0;
      // On AWS: this process's own time (the wall time less the time a call was on the wire to
      // DynamoDB Local or fauxqs) plus the assumed AWS latency of its calls, overlapping as much as
      // they overlapped here.
      const computeMs = Math.max(0, wallMs - s.netMs);
      const overlap = s.sumNetMs > 0 ? s.netMs / s.sumNetMs : 1;
      this.tally.invocations.push({ fn, wallMs, netMs: s.netMs, modeledMs: computeMs + s.awsMs * overlap });
    }
  }

  /** Runs `body` as an actor that is not a Lambda invocation (the agent, Lambda's pollers). */
  as<T>(actor: "agent" | "esm", body: () => Promise<T>): Promise<T> {
    return this.scope.run(newScope(actor), body);
  }

  /** What was counted since the last `take`, and a fresh start. */
  take(): Tally {
    const t = this.tally;
    this.tally = emptyTally();
    return t;
  }

  private actorTally(actor: Actor) {
    this.tally.byActor[actor] ??= { rru: 0, wru: 0, sqs: 0 };
    return this.tally.byActor[actor];
  }

  private onDynamo(s: Scope | undefined, command: string, input: Record<string, unknown>, consumed: unknown) {
    if (!s) return; // setup and inspection: not part of any operation
    const { units, table, indexes } = billedDynamoUnits(command, input, consumed);
    const t = this.tally;
    t.dynamoCalls[command] = (t.dynamoCalls[command] ?? 0) + 1;
    const a = this.actorTally(s.actor);
    if (DYNAMO_WRITES.has(command)) {
      t.wru += units;
      a.wru += units;
    } else {
      t.rru += units;
      a.rru += units;
      if (isSiteRead(command, input)) {
        t.siteReads++;
        t.siteReadRru += units;
      }
    }
    if (this.trace) t.calls.push({ actor: s.actor, command, units, table, indexes, at: callSite() });
  }

  private onRefused(s: Scope | undefined, command: string, input: Record<string, unknown>) {
    if (!s) return;
    this.tally.refusedWrites++;
    // AWS bills a refused conditional write at least one unit per item it checked (twice in a
    // transaction); DynamoDB Local reports nothing, so count that minimum.
    const items =
      command === "TransactWriteItems" ? ((input.TransactItems as unknown[]) ?? []).length * 2 : 1;
    this.tally.wru += items;
    this.actorTally(s.actor).wru += items;
    if (this.trace)
      this.tally.calls.push({
        actor: s.actor,
        command: `${command} (refused)`,
        units: items,
        table: items,
        indexes: 0,
        at: callSite(),
      });
  }

  private onSqs(s: Scope | undefined, command: string, requests: number) {
    if (!s) return;
    const key = `${s.actor}: ${command}`;
    this.tally.sqs[key] = (this.tally.sqs[key] ?? 0) + requests;
    if (!command.endsWith("(empty)")) this.actorTally(s.actor).sqs += requests;
  }
}

/** The scheduler's snapshot: every host of one site, from the `HOSTS` index partition. */
function isSiteRead(command: string, input: Record<string, unknown>): boolean {
  const values = input.ExpressionAttributeValues as Record<string, unknown> | undefined;
  if (command !== "Query" || !values) return false;
  const pk = values[":pk"];
  const isHosts = pk === "HOSTS" || (pk as { S?: string } | undefined)?.S === "HOSTS";
  return isHosts && values[":site"] !== undefined;
}

/** Billed SQS requests of a tally, leaving out empty receives (the idle figure counts those). */
export function sqsRequests(t: Tally): number {
  let n = 0;
  for (const [k, v] of Object.entries(t.sqs)) if (!k.endsWith("(empty)")) n += v;
  return n;
}
