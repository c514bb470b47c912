/**
 * Errors of the Xen driver that are not `DriverError`s. Failures the driver can classify (no such
 * domain, not enough memory, host unreachable, ...) are `DriverError`s with a stable code
 * (drivers/errors.ts); these two are what is left, and the executor reports them as `driver_failed`.
 */

export const XenErrorCode = {
  /** A value would have to go on an `xl` command line or into a domain config but is not safe there. */
  unsafeValue: "xen_unsafe_value",
  /** `xl` (or a file helper) failed in a way the driver does not recognise. */
  commandFailed: "xen_command_failed",
} as const;
export type XenErrorCode = (typeof XenErrorCode)[keyof typeof XenErrorCode];

export class XenError extends Error {
  override name = "XenError";
  readonly code: XenErrorCode;
  constructor(code: XenErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/** Refused before anything ran: the value is not one the driver puts on a command line or in a config. */
export class UnsafeValueError extends XenError {
  override name = "UnsafeValueError";
  constructor(message: string) {
    super(XenErrorCode.unsafeValue, message);
  }
}

/** A command exited non-zero with output the driver could not classify; carries what it printed. */
export class XlCommandError extends XenError {
  override name = "XlCommandError";
  readonly argv: readonly string[];
  readonly exitCode: number;
  readonly stderr: string;
  constructor(argv: readonly string[], exitCode: number, stderr: string) {
    const detail = stderr.trim().split("\n").slice(-3).join(" | ");
    super(XenErrorCode.commandFailed, `${argv.slice(0, 2).join(" ")} exited ${exitCode}: ${detail}`);
    this.argv = argv;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}
