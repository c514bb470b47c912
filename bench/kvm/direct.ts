/**
 * The hypervisor's own time: commands run on a test-bed host directly, inside its mount namespace
 * (`bed.exec`, i.e. `nsenter -t <holder> -m -- argv`), with no SSH and no agent in between.
 *
 * `bed.exec` is not free: Node spawns `nsenter`, which enters the namespace and execs the command.
 * That cost is measured with a no-op (`true`) run through `bed.exec` just before each command, and
 * taken off that command (`ownMs`): the pair meets the same load, which on a shared machine moves a
 * lot (the no-op costs 3× more right after a guest was destroyed than a few seconds later).
 */
import type { CommandRunner, RunOptions, RunResult } from "../../bridge-agent/transport/runner.ts";
import type { Testbed } from "../../test/kvm/testbed.ts";

/**
 * One command as it ran: its argv, its wall time through `bed.exec` (spawn cost included) and that
 * of the no-op run just before it.
 */
export type Timed = { argv: readonly string[]; ms: number; noopMs: number; code: number };

/**
 * A CommandRunner that runs argv on a test-bed host through `bed.exec` and records each command's
 * time: a KvmDriver over it runs exactly the commands it runs over SSH, minus the transport.
 */
export class DirectRunner implements CommandRunner {
  readonly hostId: string;
  private readonly bed: Testbed;
  /** Every command run since the last `take()`. */
  private log: Timed[] = [];

  constructor(bed: Testbed, hostId: string) {
    this.bed = bed;
    this.hostId = hostId;
  }

  async run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const noopMs = await timeNoop(this.bed, this.hostId);
    const t0 = performance.now();
    const r = await this.bed.exec(this.hostId, [...argv], {
      ...(opts.stdin !== undefined ? { input: opts.stdin } : {}),
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    });
    this.log.push({ argv, ms: performance.now() - t0, noopMs, code: r.code });
    return r;
  }

  /** The commands run since the last call, and forgets them. */
  take(): Timed[] {
    const out = this.log;
    this.log = [];
    return out;
  }

  async close(): Promise<void> {}
}

/** Wall time of one `bed.exec` of `argv` (spawn and nsenter included); throws on a non-zero exit. */
export async function timeExec(bed: Testbed, hostId: string, argv: string[]): Promise<number> {
  const t0 = performance.now();
  const r = await bed.exec(hostId, argv);
  const ms = performance.now() - t0;
  if (r.code !== 0) throw new Error(`${argv.join(" ")} on ${hostId} exited ${r.code}: ${r.stderr.trim()}`);
  return ms;
}

/** What `bed.exec` itself costs: the wall time of a no-op (`true`) through it. */
export const timeNoop = (bed: Testbed, hostId: string) => timeExec(bed, hostId, ["true"]);

/** The commands' own time: each one's wall time minus its no-op's (never below zero), summed. */
export function ownMs(commands: readonly Timed[]): number {
  return commands.reduce((sum, c) => sum + Math.max(0, c.ms - c.noopMs), 0);
}

/** `virsh start`, `virsh define`, …: the tool and its subcommand, for notes. */
export function verbOf(argv: readonly string[]): string {
  // The define script has `virsh -c "$1" define` inside one argument: read the joined line.
  const sub = /virsh -c \S+ (\S+)/.exec(argv.join(" "))?.[1];
  return sub ? `virsh ${sub}` : (argv.find((a) => a !== "env" && !a.includes("=")) ?? "?");
}
