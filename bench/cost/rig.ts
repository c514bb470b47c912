/**
 * The deployment in this process, wired as AWS would run it, every AWS call metered: one control
 * plane per Lambda function (API, scheduler, results, sweep, notifier), Lambda's SQS pollers (event
 * source mappings) handing batches to the same handlers Lambda would call, and the agent's part
 * played here with signed reports over its own SQS client.
 */
import {
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import type { SQSBatchResponse, SQSEvent } from "aws-lambda";
import { decodeJwt } from "jose";
import { createApp } from "../../functions/api/app.ts";
import {
  createNotifierHandler,
  createResultsHandler,
  createSchedulerHandler,
  createSweepHandler,
} from "../../functions/queue-consumers/handlers.ts";
import type { AgentCommand, AgentReport } from "../../shared/contracts/messages.ts";
import type { Deps } from "../../shared/services/context.ts";
import { signReport } from "../../shared/signing/envelopes.ts";
import { importEd25519, type SigningKey } from "../../shared/signing/keys.ts";
import type { BenchBed } from "../lib/bed.ts";
import type { Meter } from "./meter.ts";

type SqsHandler = (event: SQSEvent) => Promise<SQSBatchResponse>;

export type Rig = {
  /** One API request through the Lambda's app; returns the JSON body (throws on an unexpected status). */
  api(method: string, path: string, body?: unknown): Promise<Record<string, unknown>>;
  /** Lambda's pollers take the next batch off `ops` (or `results`) and invoke the function with it. */
  deliver(queue: "ops" | "results"): Promise<number>;
  /** The agent takes the next command off its site's queue. */
  agentReceive(site: string): Promise<{ cmd: AgentCommand; receiptHandle: string }>;
  /** The agent signs and sends a report to the results queue. */
  agentReport(site: string, report: AgentReport): Promise<void>;
  /** The agent deletes a command it has finished. */
  agentDelete(site: string, receiptHandle: string): Promise<void>;
  sweep(): Promise<unknown>;
  notify(): Promise<unknown>;
  /** Results handler invoked directly with a batch of raw bodies (inventory parts). */
  results(bodies: string[]): Promise<void>;
  /** Deps that nothing meters, for looking at state between steps. */
  inspect: Deps;
  /** Deps of the scheduler's function (its host cache off: every placement reads its site). */
  scheduler: Deps;
  agentSigner(site: string): Promise<SigningKey>;
};

export async function createRig(bed: BenchBed, meter: Meter, opts: { token: string }): Promise<Rig> {
  const cp = async (extraEnv: Record<string, string> = {}) => {
    const { deps, verifyToken } = await bed.controlPlane({ extraEnv });
    meter.instrument(deps);
    return { deps, verifyToken };
  };
  const api = await cp();
  const app = createApp({ deps: api.deps, verifyToken: api.verifyToken, awaitRequestPlugins: true });
  // Every placement reads its site (a cold cache): the figures state this assumption.
  const scheduler = (await cp({ USHER_HOST_CACHE_MS: "0" })).deps;
  const results = (await cp()).deps;
  const sweeper = (await cp()).deps;
  const notifier = (await cp()).deps;
  const inspect = (await bed.controlPlane()).deps;
  const handlers: Record<"ops" | "results", { fn: "scheduler" | "results"; handle: SqsHandler }> = {
    ops: { fn: "scheduler", handle: createSchedulerHandler(scheduler) },
    results: { fn: "results", handle: createResultsHandler(results) },
  };
  const sweepOnce = createSweepHandler(sweeper);
  const notifyOnce = createNotifierHandler(notifier, 5_000);

  const sqsClient = () => {
    const c = new SQSClient({
      region: bed.env.AWS_REGION!,
      endpoint: bed.env.USHER_SQS_ENDPOINT!,
      credentials: {
        accessKeyId: bed.env.AWS_ACCESS_KEY_ID!,
        secretAccessKey: bed.env.AWS_SECRET_ACCESS_KEY!,
      },
    });
    meter.sqs(c);
    return c;
  };
  const esm = sqsClient();
  const agent = sqsClient();
  const urls = bed.resources.queueUrls;
  const signers = new Map<string, Promise<SigningKey>>();
  const agentSigner = (site: string) => {
    if (!signers.has(site)) signers.set(site, importEd25519(bed.keys.agents[site]!.privateJwk));
    return signers.get(site)!;
  };

  /** One receive that finds a message; the pollers' empty receives are counted apart (see meter). */
  const receiveOne = async (client: SQSClient, actor: "esm" | "agent", queueUrl: string, max: number) => {
    for (let tries = 0; tries < 20; tries++) {
      const out = await meter.as(actor, () =>
        client.send(
          new ReceiveMessageCommand({
            QueueUrl: queueUrl,
            MaxNumberOfMessages: max,
            WaitTimeSeconds: 1,
            MessageSystemAttributeNames: ["All"],
          }),
        ),
      );
      if (out.Messages?.length) return out.Messages;
    }
    throw new Error(`nothing arrived on ${queueUrl}`);
  };

  const event = (queueUrl: string, bodies: { id: string; receipt: string; body: string }[]): SQSEvent => ({
    Records: bodies.map((m) => ({
      messageId: m.id,
      receiptHandle: m.receipt,
      body: m.body,
      attributes: {} as SQSEvent["Records"][number]["attributes"],
      messageAttributes: {},
      md5OfBody: "",
      eventSource: "aws:sqs",
      eventSourceARN: queueUrl,
      awsRegion: bed.env.AWS_REGION!,
    })),
  });

  return {
    async api(method, path, body) {
      const res = await meter.invoke("api", async () =>
        app.request(path, {
          method,
          headers: {
            authorization: `Bearer ${opts.token}`,
            ...(body === undefined ? {} : { "content-type": "application/json" }),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        }),
      );
      const json = (await res.json()) as Record<string, unknown>;
      if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
      return json;
    },
    async deliver(queue) {
      const queueUrl = urls[queue];
      // One message a batch: at a low rate Lambda's pollers find messages one at a time.
      const messages = await receiveOne(esm, "esm", queueUrl, 1);
      const records = messages.map((m) => ({ id: m.MessageId!, receipt: m.ReceiptHandle!, body: m.Body! }));
      const { fn, handle } = handlers[queue];
      const out = await meter.invoke(fn, () => handle(event(queueUrl, records)));
      const failed = new Set(out.batchItemFailures.map((f) => f.itemIdentifier));
      const done = records.filter((r) => !failed.has(r.id));
      if (done.length)
        await meter.as("esm", () =>
          esm.send(
            new DeleteMessageBatchCommand({
              QueueUrl: queueUrl,
              Entries: done.map((r, i) => ({ Id: String(i), ReceiptHandle: r.receipt })),
            }),
          ),
        );
      return records.length;
    },
    async agentReceive(site) {
      const [m] = await receiveOne(agent, "agent", urls.agents[site]!, 1);
      const cmd = (decodeJwt(m!.Body!) as { cmd: AgentCommand }).cmd;
      return { cmd, receiptHandle: m!.ReceiptHandle! };
    },
    async agentReport(site, report) {
      const body = await signReport(report, site, await agentSigner(site));
      await meter.as("agent", () =>
        agent.send(new SendMessageCommand({ QueueUrl: urls.results, MessageBody: body })),
      );
    },
    async agentDelete(site, receiptHandle) {
      await meter.as("agent", () =>
        agent.send(new DeleteMessageCommand({ QueueUrl: urls.agents[site]!, ReceiptHandle: receiptHandle })),
      );
    },
    sweep: () => meter.invoke("sweep", () => sweepOnce()),
    notify: () => meter.invoke("notifier", () => notifyOnce()),
    async results(bodies) {
      const out = await meter.invoke("results", () =>
        handlers.results.handle(
          event(
            urls.results,
            bodies.map((body, i) => ({ id: `m${i}`, receipt: `r${i}`, body })),
          ),
        ),
      );
      if (out.batchItemFailures.length) throw new Error("results handler failed a record");
    },
    inspect,
    scheduler,
    agentSigner,
  };
}
