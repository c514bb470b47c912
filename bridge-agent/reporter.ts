/**
 * Signs agent reports (results, inventory) with the agent's key and sends them to the results queue,
 * retrying with exponential backoff. A report that cannot be sent is reported as `false`, so the
 * caller can leave the command for redelivery instead of losing the result.
 */
import type { AgentReport } from "../shared/contracts/index.ts";
import type { Logger } from "../shared/log.ts";
import { type SigningKey, signReport } from "../shared/signing/index.ts";
import { sleep } from "./sleep.ts";
import type { Sqs } from "./sqs.ts";

export type RetryPolicy = {
  /** Tries in all, the first included. */
  attempts: number;
  /** Wait before the second try; doubles each time. */
  baseDelayMs: number;
};

export const DEFAULT_SEND_RETRY: RetryPolicy = { attempts: 6, baseDelayMs: 250 };

export class Reporter {
  private readonly sqs: Sqs;
  private readonly queueUrl: string;
  private readonly site: string;
  private readonly signer: SigningKey;
  private readonly retry: RetryPolicy;
  private readonly maxMessageBytes: number;

  constructor(opts: {
    sqs: Sqs;
    queueUrl: string;
    site: string;
    signer: SigningKey;
    retry: RetryPolicy;
    /** The largest message the queue is meant to take; a larger one is sent anyway, with a warning. */
    maxMessageBytes: number;
  }) {
    this.sqs = opts.sqs;
    this.queueUrl = opts.queueUrl;
    this.site = opts.site;
    this.signer = opts.signer;
    this.retry = opts.retry;
    this.maxMessageBytes = opts.maxMessageBytes;
  }

  /** Signs and sends `report`; true once the queue took it, false when every try failed. */
  async send(report: AgentReport, log: Logger, attempts = this.retry.attempts): Promise<boolean> {
    const body = await signReport(report, this.site, this.signer);
    // Only a single host with about a thousand domains outgrows an inventory part; SQS has taken up to
    // 1 MiB since 2025, so it may well go through, but a queue limited to 256 KiB refuses it.
    if (body.length > this.maxMessageBytes)
      log.warn("report larger than the queue's message limit", {
        type: report.type,
        bytes: body.length,
        limit: this.maxMessageBytes,
      });
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        await this.sqs.send(this.queueUrl, body);
        return true;
      } catch (err) {
        log.warn("report send failed", { type: report.type, attempt, of: attempts, err });
        if (attempt < attempts) await sleep(this.retry.baseDelayMs * 2 ** (attempt - 1));
      }
    }
    return false;
  }
}
