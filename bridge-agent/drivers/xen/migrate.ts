/**
 * Migration of a VM to another Xen host: `xl migrate <domain> <target address>`, which copies the
 * domain over ssh from this dom0 to the target's (`xl migrate-receive`) and destroys it here once the
 * target runs it. xl carries the domain's config in the stream but not Usher's config file, so the
 * driver moves that itself, running commands on the target too (`peer`); a stopped VM moves as that
 * file alone.
 * Without a peer a running VM still migrates, but its config cannot follow and is dropped.
 */
import type { MigrationTarget, PowerState } from "../../../shared/contracts/index.ts";
import type { RunResult } from "../../transport/runner.ts";
import type { MigrateOptions } from "../driver.ts";
import { DriverError, DriverErrorCode as E } from "../errors.ts";
import { assertMigrationHost, xl } from "./commands.ts";
import { parseConfigMeta } from "./config.ts";
import { XenHost } from "./host.ts";
import { classifyMigrateFailure, MigrationProgress, powerStateOfFlags } from "./parse.ts";

export type MigrateDeps = {
  /** The target host, when this agent can run commands there too. */
  peer: XenHost | undefined;
  migrateTimeoutMs: number;
};

const failed = (message: string, cause?: unknown) =>
  new DriverError(E.migrationFailed, message, cause === undefined ? undefined : { cause });

/** Moves `vmId` from `src` to `target`; resolves to its state there. Already there is success. */
export async function migrate(
  src: XenHost,
  vmId: string,
  target: MigrationTarget,
  opts: MigrateOptions,
  { peer, migrateTimeoutMs }: MigrateDeps,
): Promise<PowerState> {
  if (target.kind !== "xen") throw failed(`no xen host ${target.hostId} (${target.kind}) to migrate to`);
  if (target.hostId === src.hostId) throw failed("target is the source host");
  let address: string;
  try {
    address = assertMigrationHost(target.address);
  } catch (cause) {
    throw failed(`cannot migrate to ${JSON.stringify(target.address)}: not a host name or address`, cause);
  }
  const probe = await src.probe(vmId, opts);
  const cfgText = probe.hasCfg ? await src.readFile(src.paths(vmId).cfg, opts) : undefined;

  if (!probe.row) {
    if (probe.hasSave) throw new DriverError(E.invalidState, `cannot migrate vm ${vmId}: it is suspended`);
    const there = peer ? await peer.probe(vmId, opts) : undefined;
    const thereState = there ? XenHost.stateOf(there) : "absent";
    // Running there already: a repeated command, or an earlier one whose config move did not finish.
    if (there?.row || (!probe.hasCfg && thereState !== "absent")) {
      if (peer && cfgText !== undefined) await handOver(src, peer, vmId, cfgText);
      opts.onProgress?.(100);
      return thereState;
    }
    if (!probe.hasCfg)
      throw new DriverError(E.domainNotFound, `no domain for vm ${vmId} on host ${src.hostId}`);
    if (!peer || cfgText === undefined) {
      throw failed(`moving stopped vm ${vmId} needs this agent to drive host ${target.hostId} too`);
    }
    if (thereState !== "absent") throw failed(`host ${target.hostId} already has vm ${vmId} (${thereState})`);
    await handOver(src, peer, vmId, cfgText);
    opts.onProgress?.(100);
    return "stopped";
  }

  const before = powerStateOfFlags(probe.row.flags);
  if (before === "stopped")
    throw new DriverError(E.invalidState, `cannot migrate vm ${vmId}: it is shutting down`);
  const meta = cfgText === undefined ? undefined : parseConfigMeta(cfgText);
  if (peer) {
    await peer.ensureCapacity(meta ?? { vcpus: probe.row.vcpus, memoryMiB: probe.row.memoryMiB }, opts);
    // xl migrate copies memory, not disks: the disk must be on storage the target sees at the same path.
    const overlay = src.paths(vmId).overlay;
    if (meta?.image && !(await peer.existing([overlay], opts)).has(overlay)) {
      throw new DriverError(E.imageNotFound, `disk ${overlay} of vm ${vmId} is not on host ${peer.hostId}`);
    }
  }

  // xl migrate is always live; an offline one freezes the guest first and the target resumes it.
  const freeze = !opts.live && before === "running";
  if (freeze) await src.ok(xl.pause(vmId), opts);
  const progress = new MigrationProgress();
  let reached = 0;
  let res: RunResult;
  try {
    res = await src.run(xl.migrate(vmId, address, { paused: before === "paused" }), {
      ...(opts.signal ? { signal: opts.signal } : {}),
      timeoutMs: migrateTimeoutMs,
      onStderr: (chunk) => {
        for (const pct of progress.feed(chunk)) {
          reached = pct;
          opts.onProgress?.(pct);
        }
      },
    });
  } catch (err) {
    if (freeze) await thaw(src, vmId);
    throw err;
  }
  if (res.code !== 0) {
    if (freeze) await thaw(src, vmId);
    const why = res.stderr.trim().split("\n").slice(-3).join(" | ");
    throw new DriverError(
      classifyMigrateFailure(res.stderr),
      `xl migrate of vm ${vmId} to ${address} failed (exit ${res.code}): ${why}`,
    );
  }
  if (cfgText !== undefined) {
    if (peer) await handOver(src, peer, vmId, cfgText);
    else await src.remove([src.paths(vmId).cfg], {}); // the domain left; a config here would say "stopped"
  }
  if (reached < 100) opts.onProgress?.(100);
  return before;
}

/**
 * Writes the VM's config on the target, then removes it here. Not abortable: it runs once the domain
 * has moved, and the config must follow it.
 */
async function handOver(src: XenHost, peer: XenHost, vmId: string, cfgText: string): Promise<void> {
  const to = peer.paths(vmId);
  try {
    await peer.writeFile(to.cfg, to.cfgTmp, cfgText);
  } catch (cause) {
    throw failed(
      `vm ${vmId} is on host ${peer.hostId} but its config could not be written there; repeat the migration to finish`,
      cause,
    );
  }
  const from = src.paths(vmId);
  await src.remove([from.cfg, from.cfgTmp]);
}

/** Unfreezes a guest an offline migration paused, after the migration failed or was aborted. */
async function thaw(src: XenHost, vmId: string): Promise<void> {
  await src.run(xl.unpause(vmId)).catch(() => {});
}
