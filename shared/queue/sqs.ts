/** Sending to Usher's queues. SQS errors become `queue_send_failed` UsherErrors here, where the call is made. */
import { SendMessageBatchCommand, SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import type { OpsMessage } from "../contracts/messages.ts";
import { ErrorCode, UsherError } from "../errors.ts";

export type QueueConfig = {
  region: string;
  endpoint?: string | undefined;
  opsQueueUrl: string;
  agentQueueUrlTemplate: string;
  credentials?: { accessKeyId: string; secretAccessKey: string } | undefined;
};

export class QueueClient {
  readonly sqs: SQSClient;
  readonly config: QueueConfig;

  constructor(config: QueueConfig) {
    this.config = config;
    this.sqs = new SQSClient({
      region: config.region,
      ...(config.endpoint ? { endpoint: config.endpoint } : {}),
      ...(config.credentials ? { credentials: config.credentials } : {}),
      maxAttempts: 3,
    });
  }

  agentQueueUrl(site: string): string {
    return this.config.agentQueueUrlTemplate.replace("{site}", site);
  }

  /** Sends operation pointers to the `ops` queue, ten per request; `delaySeconds` holds them back. */
  async sendOps(messages: OpsMessage[], delaySeconds = 0): Promise<void> {
    for (let i = 0; i < messages.length; i += 10) {
      const batch = messages.slice(i, i + 10);
      const out = await this.wrap("ops", () =>
        this.sqs.send(
          new SendMessageBatchCommand({
            QueueUrl: this.config.opsQueueUrl,
            Entries: batch.map((m, j) => ({
              Id: String(j),
              MessageBody: JSON.stringify(m),
              ...(delaySeconds > 0 ? { DelaySeconds: delaySeconds } : {}),
            })),
          }),
        ),
      );
      if (out.Failed?.length) {
        throw new UsherError(ErrorCode.queueSendFailed, `ops queue refused ${out.Failed.length} messages`, {
          details: { failed: out.Failed.map((f) => f.Message ?? f.Code) },
        });
      }
    }
  }

  /** Sends a signed command to the agent queue of `site`. */
  async sendCommand(site: string, jws: string): Promise<void> {
    await this.wrap(`agent-${site}`, () =>
      this.sqs.send(new SendMessageCommand({ QueueUrl: this.agentQueueUrl(site), MessageBody: jws })),
    );
  }

  private async wrap<T>(queue: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (cause) {
      throw new UsherError(
        ErrorCode.queueSendFailed,
        `sending to the ${queue} queue failed: ${(cause as Error).message}`,
        { cause },
      );
    }
  }
}
