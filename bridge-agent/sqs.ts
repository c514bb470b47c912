/**
 * A thin wrapper over the SQS client: the four calls the agent makes, with AWS errors translated
 * into `QueueError` codes here, where the calls are made.
 */
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import type { AgentConfig } from "./config.ts";
import { QueueError, QueueErrorCode } from "./errors.ts";

export type ReceivedMessage = {
  messageId: string;
  body: string;
  receiptHandle: string;
  /** How many times SQS has handed this message out, this time included. */
  receiveCount: number;
};

export type ReceiveOptions = {
  maxMessages: number;
  waitSeconds: number;
  visibilityTimeoutSeconds: number;
  /** Ends a long poll early (agent stopping). */
  signal?: AbortSignal;
};

/** An SQS client for the agent's config (endpoint and static credentials for local emulators). */
export function createSqsClient(config: Pick<AgentConfig, "sqs" | "credentials">): SQSClient {
  return new SQSClient({
    region: config.sqs.region,
    ...(config.sqs.endpoint ? { endpoint: config.sqs.endpoint } : {}),
    // A copy: the SDK writes into the credentials object it is given.
    ...(config.credentials ? { credentials: { ...config.credentials } } : {}),
  });
}

export class Sqs {
  private readonly client: SQSClient;

  constructor(client: SQSClient) {
    this.client = client;
  }

  async receive(queueUrl: string, opts: ReceiveOptions): Promise<ReceivedMessage[]> {
    const out = await this.call("receive", opts.signal, () =>
      this.client.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: opts.maxMessages,
          WaitTimeSeconds: opts.waitSeconds,
          VisibilityTimeout: opts.visibilityTimeoutSeconds,
          MessageSystemAttributeNames: ["ApproximateReceiveCount"],
        }),
        opts.signal ? { abortSignal: opts.signal } : {},
      ),
    );
    return (out.Messages ?? []).flatMap((m) =>
      m.MessageId && m.ReceiptHandle && m.Body !== undefined
        ? [
            {
              messageId: m.MessageId,
              body: m.Body,
              receiptHandle: m.ReceiptHandle,
              receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? 1),
            },
          ]
        : [],
    );
  }

  async delete(queueUrl: string, receiptHandle: string): Promise<void> {
    await this.call("delete", undefined, () =>
      this.client.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: receiptHandle })),
    );
  }

  /** Hides the message for `seconds` more from now; 0 hands it back to the queue at once. */
  async changeVisibility(queueUrl: string, receiptHandle: string, seconds: number): Promise<void> {
    await this.call("change visibility", undefined, () =>
      this.client.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: queueUrl,
          ReceiptHandle: receiptHandle,
          VisibilityTimeout: seconds,
        }),
      ),
    );
  }

  async send(queueUrl: string, body: string): Promise<void> {
    await this.call("send", undefined, () =>
      this.client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body })),
    );
  }

  close(): void {
    this.client.destroy();
  }

  private async call<T>(what: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw translate(err, what, signal);
    }
  }
}

function translate(err: unknown, what: string, signal: AbortSignal | undefined): QueueError {
  const name = (err as { name?: string }).name ?? "";
  const message = `SQS ${what} failed: ${name || "error"}: ${(err as Error).message ?? String(err)}`;
  const code =
    signal?.aborted || name === "AbortError"
      ? QueueErrorCode.aborted
      : name === "QueueDoesNotExist" || name.endsWith("NonExistentQueue")
        ? QueueErrorCode.notFound
        : name === "ReceiptHandleIsInvalid" || name === "MessageNotInflight"
          ? QueueErrorCode.receiptInvalid
          : name === "AccessDenied" || name === "AccessDeniedException" || name === "InvalidSecurity"
            ? QueueErrorCode.accessDenied
            : QueueErrorCode.unavailable;
  return new QueueError(code, message, { cause: err });
}
