import { DescribeTableCommand, DescribeTimeToLiveCommand } from "@aws-sdk/client-dynamodb";
import { GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_RECEIVE_COUNT, visibilityTimeoutSeconds } from "../../shared/config/queues.ts";
import { TTL_ATTRIBUTE } from "../../shared/store/table.ts";
import { groupAlive, pidAlive } from "./child.ts";
import { type DynamoDbLocal, localDynamoDbClient, startDynamoDbLocal } from "./dynamodb.ts";
import { ensureResources, type Resources } from "./resources.ts";
import { localSqsClient, type SqsEmulator, startSqsEmulator } from "./sqs.ts";

// Real DynamoDB Local (java) and real fauxqs, both child processes ended by pid in afterAll.
describe("ensureResources", { timeout: 60_000 }, () => {
  let ddb: DynamoDbLocal;
  let sqs: SqsEmulator;
  const output: string[] = [];
  const sink = (source: string, line: string) => output.push(`${source}: ${line}`);
  const input = () => ({
    dynamodbEndpoint: ddb.endpoint,
    sqsEndpoint: sqs.endpoint,
    table: "usher-test",
    queuePrefix: "t-",
    sites: ["alpha", "beta"],
  });

  beforeAll(async () => {
    [ddb, sqs] = await Promise.all([startDynamoDbLocal({ sink }), startSqsEmulator({ sink })]);
  }, 60_000);

  afterAll(async () => {
    const pids = [ddb?.pid, sqs?.pid].filter((p): p is number => p !== undefined);
    await Promise.all([ddb?.stop(), sqs?.stop()]);
    for (const pid of pids) {
      expect(pidAlive(pid)).toBe(false);
      expect(groupAlive(pid)).toBe(false);
    }
  }, 30_000);

  let first: Resources;
  it("creates the table, TTL, queues and redrive, and is idempotent", async () => {
    first = await ensureResources(input());
    const second = await ensureResources(input());
    expect(second).toEqual(first);

    expect(first.queueUrls.ops).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/.*\/t-ops$/);
    expect(first.agentQueueUrlTemplate.replace("{site}", "alpha")).toBe(first.queueUrls.agents.alpha);
    expect(first.agentQueueUrlTemplate.replace("{site}", "beta")).toBe(first.queueUrls.agents.beta);
    expect(Object.keys(first.queueUrls.deadLetter).sort()).toEqual([
      "t-agent-alpha",
      "t-agent-beta",
      "t-ops",
      "t-results",
    ]);

    const client = localDynamoDbClient(ddb.endpoint);
    try {
      const { Table } = await client.send(new DescribeTableCommand({ TableName: "usher-test" }));
      expect(Table?.TableStatus).toBe("ACTIVE");
      expect(Table?.KeySchema?.map((k) => k.AttributeName)).toEqual(["pk", "sk"]);
      expect(Table?.GlobalSecondaryIndexes?.map((g) => g.IndexName).sort()).toEqual(["gsi1", "gsi2"]);
      const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: "usher-test" }));
      expect(ttl.TimeToLiveDescription?.AttributeName).toBe(TTL_ATTRIBUTE);
      expect(ttl.TimeToLiveDescription?.TimeToLiveStatus).toBe("ENABLED");
    } finally {
      client.destroy();
    }
  });

  it("gives every queue a DLQ with maxReceiveCount and the configured visibility timeout", async () => {
    const sqsClient = localSqsClient(sqs.endpoint);
    try {
      const queues: Array<[string, string, number]> = [
        ["t-ops", first.queueUrls.ops, visibilityTimeoutSeconds.ops],
        ["t-results", first.queueUrls.results, visibilityTimeoutSeconds.results],
        ["t-agent-alpha", first.queueUrls.agents.alpha!, visibilityTimeoutSeconds.agent],
        ["t-agent-beta", first.queueUrls.agents.beta!, visibilityTimeoutSeconds.agent],
      ];
      for (const [name, url, visibility] of queues) {
        const { Attributes } = await sqsClient.send(
          new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["All"] }),
        );
        expect(Attributes?.VisibilityTimeout).toBe(String(visibility));
        const redrive = JSON.parse(Attributes?.RedrivePolicy ?? "{}") as Record<string, unknown>;
        expect(Number(redrive.maxReceiveCount)).toBe(MAX_RECEIVE_COUNT);
        const dlq = await sqsClient.send(
          new GetQueueAttributesCommand({
            QueueUrl: first.queueUrls.deadLetter[name]!,
            AttributeNames: ["QueueArn"],
          }),
        );
        expect(redrive.deadLetterTargetArn).toBe(dlq.Attributes?.QueueArn);
        expect(dlq.Attributes?.QueueArn).toMatch(new RegExp(`:${name}-dlq$`));
      }
    } finally {
      sqsClient.destroy();
    }
  });

  it("moves a message received MAX_RECEIVE_COUNT times without delete to the DLQ", async () => {
    const client = localSqsClient(sqs.endpoint);
    try {
      const queue = first.queueUrls.agents.beta!;
      await client.send(new SendMessageCommand({ QueueUrl: queue, MessageBody: "poison" }));
      let received = 0;
      for (let i = 0; i < MAX_RECEIVE_COUNT + 2; i++) {
        const { Messages } = await client.send(
          new ReceiveMessageCommand({ QueueUrl: queue, VisibilityTimeout: 0, WaitTimeSeconds: 0 }),
        );
        received += Messages?.length ?? 0;
      }
      expect(received).toBe(MAX_RECEIVE_COUNT);
      const { Messages } = await client.send(
        new ReceiveMessageCommand({
          QueueUrl: first.queueUrls.deadLetter["t-agent-beta"]!,
          WaitTimeSeconds: 1,
        }),
      );
      expect(Messages?.map((m) => m.Body)).toEqual(["poison"]);
    } finally {
      client.destroy();
    }
  });
});
