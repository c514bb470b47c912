/**
 * ssh2's errors, translated into DriverErrors where they happen. ssh2 marks connection errors with
 * a `level` ("client-socket", "client-dns", "client-timeout", "client-authentication", "handshake",
 * "protocol"); socket errors also carry Node's `code` (ECONNREFUSED, ...).
 */
import { DriverError, DriverErrorCode } from "../drivers/errors.ts";

type Ssh2Error = Error & { level?: string; code?: string };

export type ConnectContext = {
  hostId: string;
  target: string;
  /** Set by the host verifier when it refused the presented key. */
  mismatch?: { expected: string; presented: string };
};

/** A failed connection attempt (before `ready`) as a DriverError. */
export function connectError(err: unknown, ctx: ConnectContext): DriverError {
  const e = err as Ssh2Error;
  const where = `${ctx.hostId} (${ctx.target})`;
  if (ctx.mismatch) {
    return new DriverError(
      DriverErrorCode.hostKeyMismatch,
      `host key of ${where} does not match the pinned one: expected ${ctx.mismatch.expected}, ` +
        `presented ${ctx.mismatch.presented}; refused before authentication`,
      { cause: err },
    );
  }
  switch (e.level) {
    case "client-authentication":
      return new DriverError(DriverErrorCode.authFailed, `${where} refused the agent's key: ${e.message}`, {
        cause: err,
      });
    case "client-timeout":
      // The host does not answer (or answers too slowly to be usable): unreachable, not a command timeout.
      return new DriverError(DriverErrorCode.hostUnreachable, `${where}: ${e.message}`, { cause: err });
    case "client-socket":
    case "client-dns":
      return new DriverError(
        DriverErrorCode.hostUnreachable,
        `cannot reach ${where}: ${e.code && !e.message.includes(e.code) ? `${e.code} ` : ""}${e.message}`,
        { cause: err },
      );
    default:
      return new DriverError(
        DriverErrorCode.hostUnreachable,
        `SSH connection to ${where} failed: ${e.message}`,
        {
          cause: err,
        },
      );
  }
}

/** A connection that was ready and then dropped. */
export function connectionLost(hostId: string, why: string, cause?: unknown): DriverError {
  return new DriverError(DriverErrorCode.hostUnreachable, `SSH connection to ${hostId} lost: ${why}`, {
    cause,
  });
}

/** A channel that could not be opened (or an exec request that failed) on a ready connection. */
export function execError(hostId: string, err: unknown): DriverError {
  return new DriverError(
    DriverErrorCode.hostUnreachable,
    `cannot start a command on ${hostId}: ${(err as Error).message}`,
    { cause: err },
  );
}
