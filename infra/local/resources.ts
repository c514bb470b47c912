/**
 * Creates what the control plane expects to exist: the state table (with TTL) and the queues, each
 * with its dead-letter queue. Idempotent: run on every start of the local stack.
 */
import {
  CreateTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  type DynamoDBClient,
  ResourceInUseException,
  ResourceNotFoundException,
  UpdateTimeToLiveCommand,
} from "@aws-sdk/client-dynamodb";
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  QueueDoesNotExist,
  QueueNameExists,
  SetQueueAttributesCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import { MAX_RECEIVE_COUNT, queueNames, visibilityTimeoutSeconds } from "../../shared/config/queues.ts";
import { TTL_ATTRIBUTE, tableDefinition } from "../../shared/store/table.ts";
import { localDynamoDbClient } from "./dynamodb.ts";
import { localSqsClient } from "./sqs.ts";

export type ResourcesInput = {
  dynamodbEndpoint: string;
  sqsEndpoint: string;
  table: string;
  /** Prepended to every queue name (e.g. `usher-` gives `usher-ops`). */
  queuePrefix: string;
  /** Sites that get an agent command queue. */
  sites: string[];
};

export type Resources = {
  table: string;
  queueUrls: {
    ops: string;
    results: string;
    /** Agent command queue by site. */
    agents: Record<string, string>;
    /** Dead-letter queue URL by the name of the queue it serves. */
    deadLetter: Record<string, string>;
  };
  /** Agent command queue URL with `{site}` in place of the site name. */
  agentQueueUrlTemplate: string;
};

/** DLQs keep messages for the longest SQS allows (14 days), for inspection. */
const DLQ_RETENTION_SECONDS = 14 * 24 * 3600;

export async function ensureResources(input: ResourcesInput): Promise<Resources> {
  const ddb = localDynamoDbClient(input.dynamodbEndpoint);
  const sqs = localSqsClient(input.sqsEndpoint);
  try {
    await ensureTable(ddb, input.table);
    const names = queueNames(input.queuePrefix);
    const deadLetter: Record<string, string> = {};
    const withDlq = async (name: string, visibility: number) => {
      const { url, dlqUrl } = await ensureQueueWithDlq(sqs, name, visibility);
      deadLetter[name] = dlqUrl;
      return url;
    };
    const [ops, results, ...agentUrls] = await Promise.all([
      withDlq(names.ops, visibilityTimeoutSeconds.ops),
      withDlq(names.results, visibilityTimeoutSeconds.results),
      ...input.sites.map((site) => withDlq(names.agent(site), visibilityTimeoutSeconds.agent)),
    ]);
    const agents = Object.fromEntries(input.sites.map((site, i) => [site, agentUrls[i]!]));
    // Queue URLs differ only in their last path segment: swap the ops queue's name for the template's.
    const base = ops!.slice(0, ops!.length - names.ops.length);
    return {
      table: input.table,
      queueUrls: { ops: ops!, results: results!, agents, deadLetter },
      agentQueueUrlTemplate: `${base}${names.agent("{site}")}`,
    };
  } finally {
    ddb.destroy();
    sqs.destroy();
  }
}

async function ensureTable(ddb: DynamoDBClient, table: string): Promise<void> {
  try {
    await ddb.send(new DescribeTableCommand({ TableName: table }));
  } catch (error) {
    if (!(error instanceof ResourceNotFoundException)) throw error;
    try {
      await ddb.send(new CreateTableCommand(tableDefinition(table)));
    } catch (createError) {
      // Another starter created it in between: fine.
      if (!(createError instanceof ResourceInUseException)) throw createError;
    }
  }
  // DynamoDB Local creates tables ACTIVE at once; AWS takes a moment. Wait either way.
  for (let i = 0; ; i++) {
    const { Table } = await ddb.send(new DescribeTableCommand({ TableName: table }));
    const indexesActive = (Table?.GlobalSecondaryIndexes ?? []).every((g) => g.IndexStatus === "ACTIVE");
    if (Table?.TableStatus === "ACTIVE" && indexesActive) break;
    if (i > 300) throw new Error(`table ${table} did not become ACTIVE`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const ttl = await ddb.send(new DescribeTimeToLiveCommand({ TableName: table }));
  const status = ttl.TimeToLiveDescription?.TimeToLiveStatus;
  if (status === "ENABLED" || status === "ENABLING") return;
  try {
    await ddb.send(
      new UpdateTimeToLiveCommand({
        TableName: table,
        TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
      }),
    );
  } catch (error) {
    // DynamoDB (Local and AWS) answers ValidationException "TimeToLive is already enabled" when a
    // concurrent starter won the race; anything else is real.
    if (!(error instanceof Error && /already enabled/i.test(error.message))) throw error;
  }
}

async function ensureQueueWithDlq(
  sqs: SQSClient,
  name: string,
  visibility: number,
): Promise<{ url: string; dlqUrl: string }> {
  const dlqName = queueNames("").deadLetter(name);
  const dlqUrl = await ensureQueue(sqs, dlqName, { MessageRetentionPeriod: String(DLQ_RETENTION_SECONDS) });
  const { Attributes } = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ["QueueArn"] }),
  );
  const dlqArn = Attributes?.QueueArn;
  if (!dlqArn) throw new Error(`queue ${dlqName} has no QueueArn`);
  const url = await ensureQueue(sqs, name, {
    VisibilityTimeout: String(visibility),
    RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: MAX_RECEIVE_COUNT }),
  });
  return { url, dlqUrl };
}

/** Creates the queue, or brings an existing one's attributes to `attributes`. Returns its URL. */
async function ensureQueue(
  sqs: SQSClient,
  name: string,
  attributes: Record<string, string>,
): Promise<string> {
  const existing = await queueUrl(sqs, name);
  if (existing) {
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl: existing, Attributes: attributes }));
    return existing;
  }
  try {
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
    if (!QueueUrl) throw new Error(`CreateQueue ${name} returned no URL`);
    return QueueUrl;
  } catch (error) {
    // Created concurrently with other attributes: converge on ours.
    if (!(error instanceof QueueNameExists)) throw error;
    const url = await queueUrl(sqs, name);
    if (!url) throw error;
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: attributes }));
    return url;
  }
}

async function queueUrl(sqs: SQSClient, name: string): Promise<string | undefined> {
  try {
    return (await sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl;
  } catch (error) {
    if (error instanceof QueueDoesNotExist) return undefined;
    // Some emulators answer with the legacy error name only.
    if (error instanceof Error && /NonExistentQueue|QueueDoesNotExist/.test(error.name)) return undefined;
    throw error;
  }
}
