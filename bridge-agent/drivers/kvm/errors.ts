/**
 * The KVM driver's own errors, and the one place where virsh's and qemu-img's error text becomes a
 * `DriverError` code. What the shared codes cannot name stays a `KvmError`, which the agent reports
 * as `driver_failed` (bridge-agent/errors.ts `toErrorInfo`): a failure the driver did not classify.
 */
import { DriverError, type DriverErrorCode, DriverErrorCode as E } from "../errors.ts";

export const KvmErrorCode = {
  /** An id, path, URI or other value failed validation before any command was built. */
  invalidInput: "invalid_input",
  /** virsh or qemu-img failed in a way not mapped to a DriverError code. */
  commandFailed: "command_failed",
  /** A domain is named like Usher's (`usher-<vmId>`) but its metadata says otherwise. */
  foreignDomain: "foreign_domain",
} as const;
export type KvmErrorCode = (typeof KvmErrorCode)[keyof typeof KvmErrorCode];

export class KvmError extends Error {
  override name = "KvmError";
  readonly code: KvmErrorCode;
  constructor(code: KvmErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/** Throws `invalid_input` unless `ok`. */
export function check(ok: boolean, message: string): asserts ok {
  if (!ok) throw new KvmError(KvmErrorCode.invalidInput, message);
}

/** The `error: ...` lines of virsh's standard error, joined; the whole text when it has none. */
export function errorText(stderr: string): string {
  const lines = stderr
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("error: "))
    .map((l) => l.slice("error: ".length));
  return (lines.length > 0 ? lines.join(": ") : stderr.trim()) || "no error text";
}

// Patterns on virsh's C-locale text (commands run under `env LC_ALL=C`), most specific first.
const PATTERNS: [RegExp, DriverErrorCode][] = [
  [/failed to get domain|Domain not found|no domain with matching/i, E.domainNotFound],
  [
    /Cannot allocate memory|out of memory|not enough memory|Maximum CPUs greater|vcpus? (count|number) .*(exceeds|greater)|maximum vcpus/i,
    E.insufficientResources,
  ],
  [/Could not open .*(backing file|No such file)|No such file or directory.*\.qcow2/i, E.imageNotFound],
  [
    /failed to connect to the hypervisor|Failed to connect socket|Connection refused|Connection reset|End of file while reading data|Cannot recv data|Broken pipe|no connection driver available/i,
    E.hostUnreachable,
  ],
  [
    /Requested operation is not valid|domain is not running|domain is already (running|active)|Domain is already active|not paused|is not running/i,
    E.invalidState,
  ],
];

/** The DriverError code virsh's or qemu-img's error text means, if it means one. */
export function codeOf(stderr: string): DriverErrorCode | undefined {
  return PATTERNS.find(([re]) => re.test(stderr))?.[1];
}

/**
 * The error for a failed command: a DriverError when its text maps to a code (or to `fallback`,
 * e.g. `migration_failed` for a migration), otherwise a KvmError carrying the text.
 */
export function commandError(
  what: string,
  host: string,
  stderr: string,
  fallback?: DriverErrorCode,
): DriverError | KvmError {
  const text = errorText(stderr);
  const code = codeOf(stderr);
  const message = `${what} on host ${host} failed: ${text}`;
  // Under a fallback (a migration) only codes that name a cause keep their meaning; "not valid"
  // and the unmapped rest become the fallback.
  if (code && !(fallback && code === E.invalidState)) return new DriverError(code, message);
  if (fallback) return new DriverError(fallback, message);
  return new KvmError(KvmErrorCode.commandFailed, message);
}
