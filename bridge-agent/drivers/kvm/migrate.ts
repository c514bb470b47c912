/**
 * Migration with `virsh migrate` (persistent on the target, undefined here), idempotent after a
 * crash: the target host is asked first whenever the domain is not here, so a redelivered migrate
 * whose first attempt completed is a success, and a migration still running (the agent died, the
 * remote virsh did not) is waited for rather than started twice. A VM's overlay disk is recreated
 * on the target over the same base image, and only its top layer is copied (`--copy-storage-inc`).
 */
import type { MigrationTarget, PowerState } from "../../../shared/contracts/index.ts";
import { sleep } from "../../sleep.ts";
import { DriverError, DriverErrorCode as E } from "../errors.ts";
import * as cmd from "./commands.ts";
import type { Images } from "./disks.ts";
import { check, commandError } from "./errors.ts";
import type { VirshHost } from "./host.ts";
import { MigrationProgress, parseDomjobinfo } from "./parse.ts";
import type { DomainInfo } from "./xml.ts";

export type MigrationUris = { desturi: string; migrateuri?: string };

/**
 * `qemu+ssh://<address>/system` and `tcp://<host of address>`: the source host's libvirt reaches
 * the target over SSH (its own keys) and QEMU sends memory straight to the target's address.
 */
export function defaultMigrationUris(target: MigrationTarget): MigrationUris {
  const address = target.address;
  check(
    /^[A-Za-z0-9[][A-Za-z0-9.:[\]-]{0,254}$/.test(address),
    `not a host address: ${JSON.stringify(address)}`,
  );
  let host = address;
  let port = "";
  const colons = address.split(":").length - 1;
  if (address.startsWith("[")) {
    host = address.slice(0, address.indexOf("]") + 1);
    port = address.slice(host.length);
  } else if (colons === 1) {
    host = address.slice(0, address.indexOf(":"));
    port = address.slice(host.length);
  } else if (colons > 1) {
    host = `[${address}]`; // a bare IPv6 address
  }
  check(host.length > 0 && /^(:\d{1,5})?$/.test(port), `not a host address: ${JSON.stringify(address)}`);
  return { desturi: `qemu+ssh://${host}${port}/system`, migrateuri: `tcp://${host}` };
}

export type MigrateInput = {
  source: VirshHost;
  /** The target host, when the driver has a runner for it (see KvmDriverConfig.peers). */
  peer: VirshHost | undefined;
  vmId: string;
  uris: MigrationUris;
  live: boolean;
  signal: AbortSignal | undefined;
  onProgress?: (percent: number) => void;
  /** Where the driver's overlays are; they move with the domain. */
  images: Images;
};

/** How often a migration already running (from before a crash) is looked at. */
const JOB_POLL_MS = 500;

export async function migrateDomain(m: MigrateInput): Promise<PowerState> {
  const { source, peer, vmId, signal } = m;
  let last = -1;
  const report = (p: number) => {
    if (p <= last) return;
    last = p;
    m.onProgress?.(p);
  };
  let d = await source.find(vmId, signal);
  if (d && (await waitForOutgoingJob(source, d.uuid, report, signal))) d = await source.find(vmId, signal);
  if (!d) {
    const there = peer ? await peer.vmState(vmId, signal) : "absent";
    if (there === "absent") {
      throw new DriverError(E.domainNotFound, `no domain for vm ${vmId} on host ${source.hostId}`);
    }
    report(100); // migrated already: a redelivered command
    return there;
  }
  const s = await source.status(d.uuid, signal);
  if (s.power === "suspended") {
    throw new DriverError(E.invalidState, `cannot migrate domain ${d.name}: it is suspended (managed save)`);
  }
  const offline = s.power === "stopped";
  const disks = m.images.ownDisks(d);
  if (disks.length > 0) await prepareDisks(m, d, disks, offline);

  const progress = new MigrationProgress();
  const argv = cmd.migrate(source.uri, d.uuid, {
    ...m.uris,
    live: m.live,
    offline,
    copyStorage: disks.length > 0,
  });
  let r: Awaited<ReturnType<VirshHost["exec"]>>;
  try {
    r = await source.exec(argv, {
      signal,
      timeoutMs: 0, // bounded by the operation's deadline (signal), not a per-command timeout
      onStderr: (chunk) => {
        for (const p of progress.feed(chunk)) report(p);
      },
    });
  } catch (err) {
    // virsh was killed; libvirt cancels a migration whose client went away, but say so explicitly.
    await source.exec(cmd.domjobabort(source.uri, d.uuid)).catch(() => {});
    throw err;
  }
  if (r.code !== 0) {
    if (peer && disks.length > 0 && (await peer.vmState(vmId).catch(() => "unknown")) === "absent") {
      for (const path of disks) await peer.exec(cmd.removeFile(path)).catch(() => {});
    }
    throw commandError("virsh migrate", source.hostId, r.stderr, E.migrationFailed);
  }
  // The domain is the target's now; its overlay here is a stale copy.
  for (const path of disks) await source.ok(cmd.removeFile(path), { signal });
  report(100);
  return peer ? peer.vmState(vmId, signal) : s.power;
}

/** Creates the overlays on the target, over the same base image, for `--copy-storage-inc`. */
async function prepareDisks(m: MigrateInput, d: DomainInfo, disks: string[], offline: boolean) {
  const { peer, signal } = m;
  if (offline) {
    // An offline migration moves the definition only; the disk would stay behind.
    throw new DriverError(
      E.notSupported,
      `cannot migrate shut-off domain ${d.name} with a local disk; start it`,
    );
  }
  if (!peer)
    throw new DriverError(E.migrationFailed, `no runner for the target host to create ${d.name}'s disk`);
  const image = d.usher?.image;
  if (!image)
    throw new DriverError(E.migrationFailed, `domain ${d.name} has a disk but no image in its metadata`);
  if ((await peer.vmState(m.vmId, signal)) !== "absent") {
    throw new DriverError(
      E.migrationFailed,
      `vm ${m.vmId} has a domain on both ${m.source.hostId} and ${peer.hostId}`,
    );
  }
  for (const path of disks) {
    await m.images.createOverlay(peer, path, image, { signal, fallback: E.migrationFailed });
  }
}

/**
 * Waits for an outgoing migration job on the domain (one an earlier attempt started), reporting
 * its progress. Returns whether there was one.
 */
async function waitForOutgoingJob(
  host: VirshHost,
  uuid: string,
  report: (p: number) => void,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  let waited = false;
  for (;;) {
    const r = await host.exec(cmd.domjobinfo(host.uri, uuid), { signal });
    if (r.code !== 0) return waited; // gone, or not running: no job
    const job = parseDomjobinfo(r.stdout);
    if (
      job.type === "None" ||
      job.type === "Completed" ||
      job.type === "Failed" ||
      job.type === "Cancelled"
    ) {
      return waited;
    }
    if (!/migration/i.test(job.operation ?? "")) return waited;
    waited = true;
    if (job.percent !== undefined) report(Math.floor(job.percent));
    try {
      await sleep(JOB_POLL_MS, signal);
    } catch (cause) {
      throw new DriverError(E.aborted, "operation aborted", { cause });
    }
  }
}
