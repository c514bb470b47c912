/**
 * Each site's hosts as a scheduling process last read them, so a placement does not read the whole
 * site from DynamoDB every time (a query of 1,000 hosts takes about as long as ten claims). Safe to be
 * stale: a placement only chooses with it, and the claim's conditional write checks the host as it
 * really is (enabled, the amounts free, its settings such as labels unchanged since the read: see
 * `settingsVersion`); a failed claim re-reads that host into the cache, and "nothing fits" is only ever
 * answered from a fresh read (see place.ts). The process's own claims are applied as they commit.
 *
 * One per process (`Deps.hostCache`), on Lambda per warm container. Tests that want every read fresh
 * build their deps without one.
 */
import type { DeviceCounts } from "../contracts/common.ts";
import type { HostItem } from "../store/items.ts";
import type { Deps } from "./context.ts";
import { siteHosts } from "./hosts.ts";

type Entry = {
  hosts: Map<string, HostItem>;
  readAt: number;
  reading?: Promise<Map<string, HostItem>> | undefined;
  /** Hosts this process is claiming on right now, with how many claims. */
  busy: Map<string, number>;
  /** Hosts another process beat this one to lately, until when (ms since the epoch). */
  contended: Map<string, number>;
};

export class HostCache {
  private readonly sites = new Map<string, Entry>();
  /** Reads of a whole site, for the benchmark's counts. */
  reads = 0;

  /** How long a site's read serves placements before it is read again. */
  readonly maxAgeMs: number;

  constructor(maxAgeMs: number) {
    this.maxAgeMs = maxAgeMs;
  }

  /** The site's hosts: as last read if that is recent enough (or `fresh` is false), else read now. */
  async hosts(deps: Deps, site: string, opts: { fresh?: boolean } = {}): Promise<HostItem[]> {
    const now = Date.now();
    const entry = this.sites.get(site);
    if (entry && !opts.fresh && now - entry.readAt < this.maxAgeMs) return [...entry.hosts.values()];
    // Concurrent placements in one process share one read.
    if (entry?.reading) return [...(await entry.reading).values()];
    const next: Entry = entry ?? { hosts: new Map(), readAt: 0, busy: new Map(), contended: new Map() };
    next.reading = siteHosts(deps, site).then((items) => new Map(items.map((h) => [h.id, h])));
    this.sites.set(site, next);
    try {
      next.hosts = await next.reading;
      next.readAt = now;
    } finally {
      next.reading = undefined;
    }
    this.reads++;
    return [...next.hosts.values()];
  }

  /** A host as just read (a re-read after a failed claim); undefined when it is gone. */
  put(site: string, hostId: string, item: HostItem | undefined): void {
    const entry = this.sites.get(site);
    if (!entry) return;
    if (item && item.site === site) entry.hosts.set(hostId, item);
    else entry.hosts.delete(hostId);
  }

  /**
   * Hosts this process has a claim in flight on. Placements decide without them: two claims on one
   * host at once only conflict (DynamoDB cancels one transaction touching an item another holds).
   */
  busy(site: string): ReadonlyMap<string, number> {
    return this.entry(site).busy;
  }

  /** Marks a claim on `hostId` in flight; call the returned function once it has ended. */
  begin(site: string, hostId: string): () => void {
    const busy = this.entry(site).busy;
    busy.set(hostId, (busy.get(hostId) ?? 0) + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const n = (busy.get(hostId) ?? 1) - 1;
      if (n > 0) busy.set(hostId, n);
      else busy.delete(hostId);
    };
  }

  /**
   * Another process's transaction on `hostId` beat ours: leave it to them for `ms`, so schedulers that
   * chose alike spread out instead of colliding on it again.
   */
  contend(site: string, hostId: string, ms: number): void {
    this.entry(site).contended.set(hostId, Date.now() + ms);
  }

  /** Whether placements of this process should leave `hostId` out for now (busy, or contended). */
  avoid(site: string, hostId: string, now = Date.now()): boolean {
    const e = this.entry(site);
    if (e.busy.has(hostId)) return true;
    const until = e.contended.get(hostId);
    if (until === undefined) return false;
    if (until > now) return true;
    e.contended.delete(hostId);
    return false;
  }

  /** How many hosts placements of this process leave out now. */
  avoided(site: string): number {
    const e = this.entry(site);
    const now = Date.now();
    for (const [id, until] of e.contended) if (until <= now) e.contended.delete(id);
    return e.busy.size + e.contended.size;
  }

  private entry(site: string): Entry {
    let entry = this.sites.get(site);
    if (!entry) {
      entry = { hosts: new Map(), readAt: 0, busy: new Map(), contended: new Map() };
      this.sites.set(site, entry);
    }
    return entry;
  }

  /** This process's claim committed: the host's free counters as the claim left them. */
  claimed(
    site: string,
    hostId: string,
    amounts: { vcpus: number; memoryMiB: number; devices: DeviceCounts },
  ) {
    const host = this.sites.get(site)?.hosts.get(hostId);
    if (!host) return;
    const freeDevices = { ...host.freeDevices };
    for (const [model, n] of Object.entries(amounts.devices))
      freeDevices[model] = (freeDevices[model] ?? 0) - n;
    this.sites.get(site)!.hosts.set(hostId, {
      ...host,
      freeVcpus: host.freeVcpus - amounts.vcpus,
      freeMemoryMiB: host.freeMemoryMiB - amounts.memoryMiB,
      freeDevices,
      version: host.version + 1,
    });
  }
}

/** The site's hosts for a placement: through the process's cache when it has one. */
export function placementHosts(
  deps: Deps,
  site: string,
  opts: { fresh?: boolean } = {},
): Promise<HostItem[]> {
  return deps.hostCache ? deps.hostCache.hosts(deps, site, opts) : siteHosts(deps, site);
}
