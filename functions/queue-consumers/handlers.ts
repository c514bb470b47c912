/**
 * Lambda-shaped SQS handlers. Each record is handled on its own and failures are reported per record
 * (Powertools' partial batch response), so one bad record never makes SQS redeliver the whole batch.
 */
import { BatchProcessor, EventType, processPartialResponse } from "@aws-lambda-powertools/batch";
import type { SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";
import { OpsMessage } from "../../shared/contracts/messages.ts";
import { deliverNotifications } from "../../shared/plugins/outbox.ts";
import type { Deps } from "../../shared/services/context.ts";
import { handleReport } from "../../shared/services/results.ts";
import { scheduleOperation } from "../../shared/services/scheduling.ts";
import { sweep } from "../../shared/services/sweep.ts";

export type SqsHandler = (event: SQSEvent) => Promise<SQSBatchResponse>;

function batchHandler(deps: Deps, name: string, handle: (record: SQSRecord) => Promise<void>): SqsHandler {
  return async (event) => {
    const processor = new BatchProcessor(EventType.SQS);
    return processPartialResponse(
      event,
      async (record: SQSRecord) => {
        try {
          await handle(record);
        } catch (err) {
          deps.log.error(`${name} record failed; it will be redelivered`, {
            err,
            messageId: record.messageId,
          });
          throw err;
        }
      },
      processor,
      { throwOnFullBatchFailure: false },
    );
  };
}

/** `ops` queue → scheduling. A malformed body is logged and dropped (it can never succeed). */
export function createSchedulerHandler(deps: Deps): SqsHandler {
  return batchHandler(deps, "scheduler", async (record) => {
    let msg: OpsMessage;
    try {
      msg = OpsMessage.parse(JSON.parse(record.body));
    } catch (err) {
      return deps.log.error("malformed ops message dropped", { err, messageId: record.messageId });
    }
    await scheduleOperation(deps, msg);
  });
}

/** `results` queue → recording agent reports. */
export function createResultsHandler(deps: Deps): SqsHandler {
  return batchHandler(deps, "results", (record) => handleReport(deps, record.body.trim()));
}

/** Scheduled (EventBridge) → the sweep. */
export function createSweepHandler(deps: Deps) {
  return async () => sweep(deps);
}

/**
 * Scheduled → the plugin notification outbox, until nothing is due or `budgetMs` is spent (the
 * local stack runs it in a loop instead; on AWS a DynamoDB stream on the table could trigger it).
 */
export function createNotifierHandler(deps: Deps, budgetMs = 50_000) {
  return async () => {
    const until = Date.now() + budgetMs;
    let delivered = 0;
    for (;;) {
      const r = await deliverNotifications(deps);
      delivered += r.delivered;
      if (r.due === 0 || Date.now() > until) return { delivered };
    }
  };
}
