/**
 * The agent's own errors (drivers have theirs in drivers/errors.ts). Codes are stable strings that
 * land in a failed result's `error.code`.
 */
import type { ErrorInfo } from "../shared/contracts/index.ts";
import { ErrorCode, UsherError } from "../shared/errors.ts";
import { DriverError } from "./drivers/errors.ts";

export const AgentErrorCode = {
  /** The command names a host this agent does not drive. */
  hostUnknown: "host_unknown",
  /** The command's deadline passed before the operation completed. */
  deadlineExceeded: ErrorCode.deadlineExceeded,
  /** The command is missing what its action needs (e.g. a migration target). */
  validation: ErrorCode.validation,
  /** The driver failed in a way it did not classify. */
  driverFailed: ErrorCode.driverFailed,
  /** The agent stopped before the operation completed; its command is handed back. */
  stopping: "agent_stopping",
} as const;
export type AgentErrorCode = (typeof AgentErrorCode)[keyof typeof AgentErrorCode];

export class AgentError extends Error {
  override name = "AgentError";
  readonly code: AgentErrorCode;
  constructor(code: AgentErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

export const QueueErrorCode = {
  notFound: "queue_not_found",
  accessDenied: "queue_access_denied",
  receiptInvalid: "queue_receipt_invalid",
  unavailable: "queue_unavailable",
  aborted: "queue_aborted",
} as const;
export type QueueErrorCode = (typeof QueueErrorCode)[keyof typeof QueueErrorCode];

/** An SQS call that failed, translated from the AWS SDK's error where the call is made (sqs.ts). */
export class QueueError extends Error {
  override name = "QueueError";
  readonly code: QueueErrorCode;
  constructor(code: QueueErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/** The `{ code, message }` a failed result carries. */
export function toErrorInfo(err: unknown): ErrorInfo {
  if (err instanceof DriverError || err instanceof AgentError)
    return { code: err.code, message: err.message };
  if (err instanceof UsherError) return err.toInfo();
  const message = err instanceof Error ? err.message : String(err);
  return { code: AgentErrorCode.driverFailed, message };
}
