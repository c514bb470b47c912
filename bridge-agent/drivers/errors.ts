/**
 * Driver errors. Every driver (sim, kvm, xen) throws `DriverError` with one of these stable codes,
 * which the executor copies into the failed result's `error.code`; callers branch on `code`.
 */
export const DriverErrorCode = {
  /** No domain for this vmId on the host. */
  domainNotFound: "domain_not_found",
  /** The domain's state does not allow the action (e.g. unpause of a stopped domain). */
  invalidState: "invalid_state",
  /** The host lacks the vCPUs or memory to run the domain. */
  insufficientResources: "insufficient_resources",
  /** The base image the spec names is not on the host. */
  imageNotFound: "image_not_found",
  /** The host (or its hypervisor) cannot be reached. */
  hostUnreachable: "host_unreachable",
  /** The migration did not complete; the domain stays on the source host. */
  migrationFailed: "migration_failed",
  /** The driver does not support the action (see its capabilities). */
  notSupported: "not_supported",
  /** The driver is not part of this build. */
  driverUnavailable: "driver_unavailable",
  /** The operation was cancelled (deadline or agent stop) before it completed. */
  aborted: "aborted",
  /** A command on the host ran past its time limit and was killed. */
  timeout: "timeout",
  /** The host refused the agent's SSH credentials. */
  authFailed: "auth_failed",
  /** The host presented an SSH host key other than the pinned one; nothing was sent to it. */
  hostKeyMismatch: "host_key_mismatch",
} as const;
export type DriverErrorCode = (typeof DriverErrorCode)[keyof typeof DriverErrorCode];

export class DriverError extends Error {
  override name = "DriverError";
  readonly code: DriverErrorCode;
  constructor(code: DriverErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
  toInfo(): { code: string; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** True when `err` is a DriverError with `code` (any code when omitted). */
export function isDriverError(err: unknown, code?: DriverErrorCode): err is DriverError {
  return err instanceof DriverError && (code === undefined || err.code === code);
}
