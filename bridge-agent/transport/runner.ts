/**
 * How drivers run commands on a host. A command is an argv array — never a string — and the transport
 * is the only place that turns it into a command line (quoting every argument), so nothing a user
 * typed is ever interpreted by a shell.
 */
export type RunOptions = {
  /** Written to the command's standard input, then closed. */
  stdin?: string;
  /** Kill the command (and fail with `timeout`) after this long. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Called with each chunk of standard error as it arrives (progress of long commands). */
  onStderr?: (chunk: string) => void;
};

export type RunResult = { code: number; stdout: string; stderr: string };

export interface CommandRunner {
  /** The host this runner reaches (for errors and logs). */
  readonly hostId: string;
  /** Runs argv; resolves with its exit code and output (a non-zero exit is not an error here). */
  run(argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Releases connections; safe to call twice. */
  close(): Promise<void>;
}
