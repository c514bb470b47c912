/**
 * How a command on the host is stopped (timeout or abort). SSH's own "signal" channel request does
 * not help: OpenSSH's sshd refuses it for root logins ("session signalling requires privilege
 * separation", as root sessions run without the post-auth privilege separation child), and closing
 * a channel leaves a command without a terminal running. So each command is started through a tiny
 * wrapper that reports its pid on stderr and then becomes the command (`exec`, same pid); stopping it
 * sends `kill` to that pid's process group over a second channel.
 */
import { commandLine } from "./quote.ts";

const PID_PREFIX = "usher-pid ";

/** The command line for argv, wrapped: `sh -c 'printf ... $$ >&2; exec "$@"' sh argv...`. */
export function wrappedCommandLine(argv: readonly string[]): string {
  commandLine(argv); // validates argv itself (empty, NUL, line breaks) and throws with its own message
  return commandLine(["sh", "-c", `printf '${PID_PREFIX}%s\\n' "$$" >&2; exec "$@"`, "sh", ...argv]);
}

/**
 * Takes the wrapper's pid line off the front of stderr. Feed it chunks; it answers with the text
 * that belongs to the command (possibly empty) and, once, the pid.
 */
export class PidLineReader {
  private head = "";
  private done = false;
  pid: number | undefined;

  push(chunk: string): string {
    if (this.done) return chunk;
    this.head += chunk;
    const nl = this.head.indexOf("\n");
    if (nl < 0) {
      // Not a whole line yet; give up waiting if it cannot be ours.
      if (PID_PREFIX.startsWith(this.head.slice(0, PID_PREFIX.length)) && this.head.length < 64) return "";
      return this.flush();
    }
    const match = /^usher-pid (\d+)$/.exec(this.head.slice(0, nl));
    if (!match) return this.flush();
    this.pid = Number(match[1]);
    this.done = true;
    const rest = this.head.slice(nl + 1);
    this.head = "";
    return rest;
  }

  /** Whatever is held back (at the end of the stream). */
  flush(): string {
    this.done = true;
    const rest = this.head;
    this.head = "";
    return rest;
  }
}

export type KillTarget = { pid: number; signal: "TERM" | "KILL" };

/**
 * One command line that signals, for each target, the process group of `pid` (the command and
 * whatever it started), or just `pid` if its group cannot be read. sshd starts each session in a new
 * session (setsid), so that group holds only that command.
 */
export function killCommandLine(targets: readonly KillTarget[]): string {
  const script =
    'while [ "$#" -gt 1 ]; do s=$1 p=$2; shift 2; ' +
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a template
    'g=$(ps -o pgid= -p "$p" 2>/dev/null); g=${g##* }; ' +
    'case $g in ""|*[!0-9]*|0|1) kill -s "$s" "$p" ;; *) kill -s "$s" -- "-$g" ;; esac; ' +
    "done 2>/dev/null; exit 0";
  return commandLine(["sh", "-c", script, "sh", ...targets.flatMap((t) => [t.signal, String(t.pid)])]);
}
