/**
 * The consumers' batch contract with SQS: each record on its own, failures reported per record
 * (partial batch response), malformed records dropped rather than retried forever. The clients point
 * at a closed port, so a record that reaches DynamoDB fails exactly as it would in an outage.
 */
import type { SQSEvent, SQSRecord } from "aws-lambda";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../shared/log.ts";
import { Plugins } from "../../shared/plugins/host.ts";
import { QueueClient } from "../../shared/queue/sqs.ts";
import { DEFAULT_SERVICE_CONFIG, type Deps } from "../../shared/services/context.ts";
import { generateEd25519Jwks, importEd25519 } from "../../shared/signing/keys.ts";
import { createDb } from "../../shared/store/client.ts";
import { createResultsHandler, createSchedulerHandler } from "./handlers.ts";

async function deps(): Promise<Deps> {
  const closed = "http://127.0.0.1:9";
  const credentials = { accessKeyId: "x", secretAccessKey: "x" };
  const db = createDb({ table: "usher", region: "us-east-1", endpoint: closed, credentials });
  return {
    db,
    queues: new QueueClient({
      region: "us-east-1",
      endpoint: closed,
      opsQueueUrl: `${closed}/q`,
      agentQueueUrlTemplate: `${closed}/{site}`,
      credentials,
    }),
    signer: await importEd25519((await generateEd25519Jwks("cp")).privateJwk),
    agentKey: () => undefined,
    log: silentLogger,
    plugins: new Plugins(),
    now: () => new Date(),
    config: {
      ...DEFAULT_SERVICE_CONFIG,
      defaultSite: "local",
      opTimeoutSeconds: 60,
      idempotencyTtlSeconds: 60,
    },
  };
}

const record = (messageId: string, body: string) =>
  ({
    messageId,
    body,
    receiptHandle: messageId,
    attributes: {},
    messageAttributes: {},
    md5OfBody: "",
    eventSource: "aws:sqs",
    eventSourceARN: "arn",
    awsRegion: "us-east-1",
  }) as unknown as SQSRecord;

describe("queue consumers", () => {
  it("report only the records that failed, and drop malformed ones", async () => {
    const handler = createSchedulerHandler(await deps());
    const event: SQSEvent = {
      Records: [
        record("bad-json", "{nope"),
        record("bad-shape", JSON.stringify({ op: 1 })),
        record("db-down", JSON.stringify({ opId: "op-1", requestId: "r" })),
      ],
    };
    const out = await handler(event);
    expect(out.batchItemFailures).toEqual([{ itemIdentifier: "db-down" }]);
  });

  it("drop agent reports that are not signed by a known agent without retrying them", async () => {
    const handler = createResultsHandler(await deps());
    const out = await handler({
      Records: [record("forged", "not-a-jws"), record("json", JSON.stringify({ type: "result" }))],
    });
    expect(out.batchItemFailures).toEqual([]);
  });
});
