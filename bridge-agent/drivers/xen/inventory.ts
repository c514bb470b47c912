/**
 * What is on a Xen host: every domain `xl list` shows (Usher's by their `usher-<vmId>` name, others as
 * they are), plus the VMs that only exist as a config (stopped) or a managed save (suspended), and
 * the host's CPU load since the previous inventory (load.ts).
 */
import type { DomainReport, HostInventory } from "../../../shared/contracts/index.ts";
import { xl } from "./commands.ts";
import { vmIdOfDomain } from "./config.ts";
import type { XenHost } from "./host.ts";
import type { CpuTimeLoad } from "./load.ts";
import { parseXlListLong, powerStateOfFlags } from "./parse.ts";

export async function inventoryOf(
  host: XenHost,
  meter: CpuTimeLoad,
  ctx: { signal?: AbortSignal },
): Promise<HostInventory> {
  const [free, long, metas, saved] = await Promise.all([
    host.free(ctx),
    host.ok(xl.listLong(), ctx),
    host.metas(ctx),
    host.saved(ctx),
  ]);
  // The configured size (`xl list -l`) rather than what the guest holds this instant (`xl list` Mem).
  const configs = new Map(parseXlListLong(long.stdout).map((c) => [c.domid, c]));
  const domains: DomainReport[] = [];
  const listed = new Set<string>();
  for (const row of free.rows) {
    if (row.domid === 0) continue;
    const cfg = configs.get(row.domid);
    const vmId = vmIdOfDomain(row.name);
    const meta = vmId === undefined ? undefined : metas.get(vmId);
    if (vmId !== undefined) listed.add(vmId);
    domains.push({
      uuid: cfg?.uuid ?? row.uuid ?? meta?.uuid ?? "",
      ...(vmId !== undefined ? { vmId } : {}),
      ...(meta ? { opId: meta.opId } : {}),
      name: meta?.vmName ?? row.name,
      powerState: powerStateOfFlags(row.flags),
      vcpus: cfg?.vcpus ?? row.vcpus,
      memoryMiB: cfg?.memoryMiB ?? row.memoryMiB,
    });
  }
  // A managed save without its config is left out: its size and UUID are inside the save only.
  for (const [vmId, meta] of metas) {
    if (listed.has(vmId)) continue;
    domains.push({
      uuid: meta.uuid,
      vmId,
      opId: meta.opId,
      name: meta.vmName,
      powerState: saved.has(vmId) ? "suspended" : "stopped",
      vcpus: meta.vcpus,
      memoryMiB: meta.memoryMiB,
    });
  }
  const load = meter.sample(free.rows, free.nrCpus, Date.now());
  return {
    hostId: host.hostId,
    reachable: true,
    domains,
    free: { vcpus: free.vcpus, memoryMiB: free.memoryMiB },
    ...(load === undefined ? {} : { load }),
  };
}
