/**
 * Turning argv into one remote command line. sshd hands the line to the login shell (`$SHELL -c`),
 * so every argument is POSIX single-quoted: inside single quotes no byte is special except `'`
 * itself, which is written as `'\''` (close, escaped quote, reopen). This holds in sh, dash, bash,
 * ksh and zsh; the remote login shell must be one of those (not csh or fish).
 *
 * The validators below are for values that become arguments of hypervisor tools (`virsh`, `xl`):
 * quoting stops the shell from reading them, but not the tool, which would take `--help` as an
 * option or `3` as a domain id.
 */

/** An argument (or a value for one) that the transport refuses to put on a command line. */
export class UnsafeArgumentError extends Error {
  override name = "UnsafeArgumentError";
  readonly code = "unsafe_argument";
}

export type QuoteOptions = {
  /** Allow line feeds and carriage returns inside arguments (off: one command per line in logs). */
  allowNewlines?: boolean;
};

// Left bare for readable logs. `=` is not here: a bare `A=b` first word is an assignment, and a
// leading `=` is expanded by zsh; `~`, `*`, `?`, `[`, `#` and `!` are not here for the same reason.
const BARE = /^[A-Za-z0-9_./:@%+,-]+$/;

/** Quotes one argument so that the shell passes exactly its bytes on. */
export function shellQuote(arg: string, opts: QuoteOptions = {}): string {
  if (arg.includes("\0"))
    throw new UnsafeArgumentError(`argument contains a NUL byte: ${JSON.stringify(arg)}`);
  if (!opts.allowNewlines && /[\r\n]/.test(arg)) {
    throw new UnsafeArgumentError(`argument contains a line break: ${JSON.stringify(arg)}`);
  }
  if (BARE.test(arg)) return arg;
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** The command line for argv: each argument quoted, joined by spaces. */
export function commandLine(argv: readonly string[], opts: QuoteOptions = {}): string {
  if (argv.length === 0) throw new UnsafeArgumentError("empty argv");
  if (argv[0] === "") throw new UnsafeArgumentError("empty program name");
  return argv.map((a) => shellQuote(a, opts)).join(" ");
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Throws unless `value` is a UUID (8-4-4-4-12 hex digits); returns it for chaining. */
export function assertUuid(value: string, what = "value"): string {
  if (!UUID.test(value)) throw new UnsafeArgumentError(`${what} is not a UUID: ${JSON.stringify(value)}`);
  return value;
}

const SAFE_TOKEN = /^[A-Za-z0-9._:@/+=-]+$/;

/**
 * Throws unless `value` is a plain token (letters, digits, `._:@/+=-`) that does not start with `-`
 * (which a tool would read as an option) and is not all digits (which virsh and xl read as a domain
 * id rather than a name). Returns it for chaining.
 */
export function assertSafeToken(value: string, what = "value"): string {
  if (value.length === 0 || value.length > 255 || !SAFE_TOKEN.test(value)) {
    throw new UnsafeArgumentError(
      `${what} has characters outside [A-Za-z0-9._:@/+=-]: ${JSON.stringify(value)}`,
    );
  }
  if (value.startsWith("-"))
    throw new UnsafeArgumentError(`${what} starts with '-': ${JSON.stringify(value)}`);
  if (/^[0-9]+$/.test(value)) {
    throw new UnsafeArgumentError(
      `${what} is all digits (a domain id, not a name): ${JSON.stringify(value)}`,
    );
  }
  return value;
}
