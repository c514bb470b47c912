/**
 * What Lambda's SQS event source mapping does, for the local stack: long-poll a queue, hand batches
 * to the same handler Lambda would call, delete what succeeded, leave failures for redelivery.
 */
import { DeleteMessageBatchCommand, ReceiveMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { SQSEvent, SQSRecord } from "aws-lambda";
import type { Logger } from "../../shared/log.ts";
import type { SqsHandler } from "./handlers.ts";

export type PollerOptions = {
  sqs: SQSClient;
  queueUrl: string;
  handler: SqsHandler;
  log: Logger;
  waitSeconds?: number;
  region?: string;
};

export class QueuePoller {
  private readonly opts: PollerOptions;
  private abort: AbortController | undefined;
  private loop: Promise<void> | undefined;

  constructor(opts: PollerOptions) {
    this.opts = opts;
  }

  /** Starts polling; safe to call twice. */
  start(): void {
    if (this.loop) return;
    this.abort = new AbortController();
    this.loop = this.run(this.abort.signal);
  }

  /** Stops after the batch in hand; safe to call twice. */
  async stop(): Promise<void> {
    this.abort?.abort();
    await this.loop;
    this.loop = undefined;
  }

  private async run(signal: AbortSignal): Promise<void> {
    const { sqs, queueUrl, handler, log } = this.opts;
    while (!signal.aborted) {
      try {
        const out = await sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: queueUrl,
            MaxNumberOfMessages: 10,
            WaitTimeSeconds: this.opts.waitSeconds ?? 20,
            MessageSystemAttributeNames: ["All"],
          }),
          { abortSignal: signal },
        );
        const messages = out.Messages ?? [];
        if (messages.length === 0) continue;
        const records: SQSRecord[] = messages.map((m) => ({
          messageId: m.MessageId ?? "",
          receiptHandle: m.ReceiptHandle ?? "",
          body: m.Body ?? "",
          attributes: (m.Attributes ?? {}) as unknown as SQSRecord["attributes"],
          messageAttributes: {},
          md5OfBody: m.MD5OfBody ?? "",
          eventSource: "aws:sqs",
          eventSourceARN: queueUrl,
          awsRegion: this.opts.region ?? "us-east-1",
        }));
        const event: SQSEvent = { Records: records };
        const result = await handler(event);
        const failed = new Set(result.batchItemFailures.map((f) => f.itemIdentifier));
        const done = records.filter((r) => !failed.has(r.messageId));
        if (done.length) {
          await sqs.send(
            new DeleteMessageBatchCommand({
              QueueUrl: queueUrl,
              Entries: done.map((r, i) => ({ Id: String(i), ReceiptHandle: r.receiptHandle })),
            }),
          );
        }
      } catch (err) {
        if (signal.aborted) break;
        log.error("poll failed; retrying", { err, queueUrl });
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }
}
