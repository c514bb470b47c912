/**
 * An in-process SQS emulator (fauxqs) for the agent's tests, listening on loopback only: fauxqs's
 * own `startFauxqs` binds 0.0.0.0, so this builds its app and listens on 127.0.0.1 itself.
 */
import {
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { buildApp } from "fauxqs";

export const LOCAL_CREDENTIALS = { accessKeyId: "local", secretAccessKey: "local" };

export type LocalSqs = {
  endpoint: string;
  client: SQSClient;
  createQueue(name: string, visibilityTimeoutSeconds?: number): Promise<string>;
  send(queueUrl: string, body: string): Promise<void>;
  /** Receives whatever is visible now (short wait) and deletes nothing. */
  receive(queueUrl: string, waitSeconds?: number): Promise<{ body: string; receiptHandle: string }[]>;
  delete(queueUrl: string, receiptHandle: string): Promise<void>;
  /** Visible and in-flight message counts. */
  counts(queueUrl: string): Promise<{ visible: number; inFlight: number }>;
  stop(): Promise<void>;
};

export async function startLocalSqs(): Promise<LocalSqs> {
  const app = buildApp({ logger: false });
  const endpoint = await app.listen({ port: 0, host: "127.0.0.1" });
  const client = new SQSClient({ region: "us-east-1", endpoint, credentials: { ...LOCAL_CREDENTIALS } });
  return {
    endpoint,
    client,
    async createQueue(name, visibilityTimeoutSeconds = 30) {
      const out = await client.send(
        new CreateQueueCommand({
          QueueName: name,
          Attributes: { VisibilityTimeout: String(visibilityTimeoutSeconds) },
        }),
      );
      if (!out.QueueUrl) throw new Error(`no url for queue ${name}`);
      return out.QueueUrl;
    },
    async send(queueUrl, body) {
      await client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }));
    },
    async receive(queueUrl, waitSeconds = 0) {
      const out = await client.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: waitSeconds,
        }),
      );
      return (out.Messages ?? []).map((m) => ({ body: m.Body ?? "", receiptHandle: m.ReceiptHandle ?? "" }));
    },
    async delete(queueUrl, receiptHandle) {
      await client.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: receiptHandle }));
    },
    async counts(queueUrl) {
      const out = await client.send(
        new GetQueueAttributesCommand({
          QueueUrl: queueUrl,
          AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        }),
      );
      const a = out.Attributes ?? {};
      return {
        visible: Number(a.ApproximateNumberOfMessages ?? 0),
        inFlight: Number(a.ApproximateNumberOfMessagesNotVisible ?? 0),
      };
    },
    async stop() {
      client.destroy();
      await app.close();
    },
  };
}
