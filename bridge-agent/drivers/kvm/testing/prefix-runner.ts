/**
 * Test-only: a CommandRunner that puts a fixed prefix before every argv (here `nsenter -t <pid> -m
 * --`, so virsh runs inside a test host's mount namespace and sees only that host's libvirtd), and
 * records every argv it ran so tests can check what reached the host.
 */
import type { CommandRunner, RunOptions, RunResult } from "../../../transport/runner.ts";

export class PrefixRunner implements CommandRunner {
  readonly hostId: string;
  /** Every argv run, without the prefix. */
  readonly calls: string[][] = [];
  private readonly inner: CommandRunner;
  private readonly prefix: readonly string[];

  constructor(inner: CommandRunner, prefix: readonly string[]) {
    this.inner = inner;
    this.prefix = prefix;
    this.hostId = inner.hostId;
  }

  run(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    this.calls.push([...argv]);
    return this.inner.run([...this.prefix, ...argv], opts);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
