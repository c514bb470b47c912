/**
 * One runner per host for the whole agent: a host's driver and the drivers that look at it as a
 * migration peer share its single SSH connection.
 */
import type { Logger } from "../../shared/log.ts";
import type { HostConfig } from "../config.ts";
import type { CommandRunner } from "./runner.ts";
import { SshRunner } from "./ssh.ts";

export class RunnerPool {
  private readonly hosts: ReadonlyMap<string, HostConfig>;
  private readonly runners = new Map<string, CommandRunner>();
  private readonly logger: Logger | undefined;

  constructor(hosts: readonly HostConfig[], logger?: Logger) {
    this.hosts = new Map(hosts.map((h) => [h.id, h]));
    this.logger = logger;
  }

  host(hostId: string): HostConfig | undefined {
    return this.hosts.get(hostId);
  }

  /** The SSH runner of a host of this agent; undefined for hosts it does not drive over SSH. */
  get(hostId: string): CommandRunner | undefined {
    const existing = this.runners.get(hostId);
    if (existing) return existing;
    const host = this.hosts.get(hostId);
    if (!host?.ssh) return undefined;
    const runner = new SshRunner({
      hostId,
      address: host.address,
      ssh: host.ssh,
      ...(this.logger ? { logger: this.logger } : {}),
    });
    this.runners.set(hostId, runner);
    return runner;
  }

  /** Closes every runner; safe twice. */
  async close(): Promise<void> {
    const all = [...this.runners.values()];
    this.runners.clear();
    await Promise.all(all.map((r) => r.close()));
  }
}
