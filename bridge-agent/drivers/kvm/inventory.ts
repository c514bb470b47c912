/**
 * A KVM host's inventory: every domain (Usher's with their vmId, foreign ones without), and free
 * capacity. Free is the host's CPUs and memory (`virsh nodeinfo`) less what running and paused
 * domains are given, the same accounting as the sim driver and the control plane's scheduler; the
 * kernel's own free memory moves with page cache and would not say what Usher may still place.
 * Load is the host's one-minute load average over its CPUs (`/proc/loadavg`).
 */
import type { DomainReport, HostInventory } from "../../../shared/contracts/index.ts";
import { DriverErrorCode as E, isDriverError } from "../errors.ts";
import * as cmd from "./commands.ts";
import { KvmError, KvmErrorCode } from "./errors.ts";
import type { VirshHost } from "./host.ts";
import { parseLoadavg, parseNodeinfo, parseUuidList } from "./parse.ts";

/** Domains read at once (each is two or three virsh calls). */
const CONCURRENCY = 4;

export async function collectInventory(host: VirshHost, signal?: AbortSignal): Promise<HostInventory> {
  const o = signal ? { signal } : {};
  const [uuids, node, loadavg] = await Promise.all([
    host.ok(cmd.listAllUuids(host.uri), o).then(parseUuidList),
    host.ok(cmd.nodeinfo(host.uri), o).then(parseNodeinfo),
    host.ok(cmd.loadavg(), o),
  ]);
  const domains: DomainReport[] = [];
  const queue = [...uuids];
  const worker = async () => {
    for (let uuid = queue.shift(); uuid; uuid = queue.shift()) {
      const report = await domainReport(host, uuid, signal);
      if (report) domains.push(report);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, queue.length) }, worker));
  domains.sort((a, b) => a.uuid.localeCompare(b.uuid));
  let vcpus = node.cpus;
  let memoryMiB = node.memoryMiB;
  for (const d of domains) {
    if (d.powerState !== "running" && d.powerState !== "paused") continue;
    vcpus -= d.vcpus;
    memoryMiB -= d.memoryMiB;
  }
  // The load-aware weigher's input: how busy the host's CPUs really are, whatever Usher placed.
  const load = parseLoadavg(loadavg, node.cpus);
  return { hostId: host.hostId, reachable: true, domains, free: { vcpus, memoryMiB }, load };
}

/** One domain's report; undefined when it was undefined while the inventory was being read. */
async function domainReport(host: VirshHost, uuid: string, signal?: AbortSignal) {
  try {
    const info = await host.info(uuid, signal);
    if (!info) return undefined;
    const { power } = await host.status(uuid, signal);
    const report: DomainReport = {
      uuid,
      name: info.usher?.name ?? info.name,
      powerState: power,
      vcpus: info.vcpus,
      memoryMiB: info.memoryMiB,
      ...(info.usher ? { vmId: info.usher.vmId } : {}),
      ...(info.usher?.opId ? { opId: info.usher.opId } : {}),
    };
    return report;
  } catch (err) {
    if (isDriverError(err, E.domainNotFound)) return undefined;
    // A domain whose XML lacks what a report needs (not one Usher defined) is left out rather than
    // failing the whole host's inventory.
    if (err instanceof KvmError && err.code === KvmErrorCode.invalidInput) return undefined;
    throw err;
  }
}
