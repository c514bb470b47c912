/**
 * Usher's errors. Callers branch on `code`, never on a message. HTTP status is mapped in one place
 * (functions/api/problem.ts); queue consumers and the agent record `code` on the operation.
 */
export const ErrorCode = {
  validation: "validation_failed",
  unauthenticated: "unauthenticated",
  forbidden: "forbidden",
  notFound: "not_found",
  conflict: "conflict",
  nameTaken: "name_taken",
  idempotencyMismatch: "idempotency_key_reused",
  idempotencyInFlight: "idempotency_in_flight",
  invalidState: "invalid_state",
  noCapacity: "no_capacity",
  hostUnavailable: "host_unavailable",
  deadlineExceeded: "deadline_exceeded",
  commandRejected: "command_rejected",
  reportRejected: "report_rejected",
  driverFailed: "driver_failed",
  queueSendFailed: "queue_send_failed",
  /** A request plugin refused the request; the message is the plugin's reason. */
  vetoed: "vetoed",
  /** A request plugin failed or ran out of time, so the request was refused (fail closed). */
  pluginFailed: "plugin_failed",
  /** A project's quota (VMs, vCPUs, memory) would be exceeded. */
  quotaExceeded: "quota_exceeded",
  internal: "internal",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class UsherError extends Error {
  override name = "UsherError";
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details;
  }
  toInfo(): { code: string; message: string; details?: Record<string, unknown> } {
    return this.details
      ? { code: this.code, message: this.message, details: this.details }
      : { code: this.code, message: this.message };
  }
}

export class NotFoundError extends UsherError {
  override name = "NotFoundError";
  constructor(what: string, id: string) {
    super(ErrorCode.notFound, `${what} ${id} not found`);
  }
}

export class ConflictError extends UsherError {
  override name = "ConflictError";
}

export class ValidationError extends UsherError {
  override name = "ValidationError";
  constructor(message: string, details?: Record<string, unknown>) {
    super(ErrorCode.validation, message, details ? { details } : undefined);
  }
}

export class AuthError extends UsherError {
  override name = "AuthError";
}

export class SignatureError extends UsherError {
  override name = "SignatureError";
}
