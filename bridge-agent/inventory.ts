/**
 * Inventory: what is really on each host, gathered from the drivers. A host whose driver fails (or
 * takes too long) is reported `reachable: false` with the error, never left out.
 *
 * A site's inventory goes out in parts that each fit in one queue message (a site of 10,000 hosts
 * and 100,000 domains is about 15 MB of JSON; SQS took at most 256 KiB per message until 2025 and
 * 1 MiB since): each part holds some hosts, each host whole, and the inventory's one `at`. Parts are
 * sent as hosts are listed, so the agent never holds more than a part and the hosts being listed.
 */
import type { AgentInventory, HostInventory } from "../shared/contracts/index.ts";
import type { HypervisorDriver } from "./drivers/driver.ts";
import { DriverError, DriverErrorCode } from "./drivers/errors.ts";
import { toErrorInfo } from "./errors.ts";

/** The largest message we send: SQS's limit before 2025 (and the default of queues made then). */
export const INVENTORY_MESSAGE_MAX_BYTES = 256 * 1024;

/**
 * What the signed envelope adds around a part's JSON besides its base64url encoding (×4/3): the JWS
 * header, the claims (`iss`, `aud`, `iat`, `exp`), the signature and the dots take under 400 bytes.
 */
const ENVELOPE_BYTES = 1024;

/** The most JSON a part's report may hold so that, signed, it stays within `messageMaxBytes`. */
export const reportBudget = (messageMaxBytes: number) =>
  Math.floor(((messageMaxBytes - ENVELOPE_BYTES) * 3) / 4);

export type InventoryOptions = {
  /** The longest one host's listing may take before it is reported unreachable. */
  timeoutMs: number;
  /**
   * Hosts listed at once. A sim host answers at once; a kvm or xen host is an SSH session and a few
   * commands, so a site of thousands is listed a few dozen at a time, not all at once.
   */
  concurrency: number;
  /** The largest signed message a part may become. */
  messageMaxBytes: number;
};

/**
 * Lists every host (`concurrency` at a time, each bounded by `timeoutMs`) and yields the inventory
 * in parts of at most `messageMaxBytes` once signed, numbered from 1, the last one marked `last`.
 * Listing goes on while the caller sends a part (the hosts already started), and waits for it after.
 */
export async function* inventoryParts(
  drivers: Iterable<HypervisorDriver>,
  ids: { agentId: string; site: string },
  opts: InventoryOptions,
): AsyncGenerator<AgentInventory> {
  // Stamped before any host is listed: the control plane compares against records older than this,
  // so an operation that finished while a host was being listed is never mistaken for drift.
  const at = new Date().toISOString();
  const packer = new PartPacker({ type: "inventory", site: ids.site, agentId: ids.agentId, at }, opts);
  const listed = inCompletionOrder(drivers, opts.concurrency, (d) => hostInventory(d, opts.timeoutMs));
  for await (const host of listed) {
    const full = packer.add(host);
    if (full) yield full;
  }
  const rest = packer.finish();
  if (rest) yield rest;
}

/** Splits a whole inventory into parts as `inventoryParts` sends them. */
export function splitInventory(inv: AgentInventory, messageMaxBytes: number): AgentInventory[] {
  const { hosts, part: _part, last: _last, ...base } = inv;
  const packer = new PartPacker(base, { messageMaxBytes });
  const parts: AgentInventory[] = [];
  for (const h of hosts) {
    const full = packer.add(h);
    if (full) parts.push(full);
  }
  const rest = packer.finish();
  if (rest) parts.push(rest);
  return parts;
}

type PartBase = Omit<AgentInventory, "hosts" | "part" | "last">;

/** Packs hosts into parts by their JSON size; a host larger than a part on its own goes alone. */
class PartPacker {
  private readonly base: PartBase;
  private readonly budget: number;
  private hosts: HostInventory[] = [];
  private bytes = 0;
  private part = 0;
  /** The report's own fields, with room for `part` and `last`. */
  private readonly fixedBytes: number;

  constructor(base: PartBase, opts: { messageMaxBytes: number }) {
    this.base = base;
    this.budget = reportBudget(opts.messageMaxBytes);
    this.fixedBytes = jsonBytes({ ...base, hosts: [], part: Number.MAX_SAFE_INTEGER, last: true });
  }

  /** Adds a host; returns the part it closed when the host did not fit in it. */
  add(host: HostInventory): AgentInventory | undefined {
    const size = jsonBytes(host) + 1; // and its comma
    let full: AgentInventory | undefined;
    if (this.hosts.length > 0 && this.fixedBytes + this.bytes + size > this.budget) full = this.close(false);
    this.hosts.push(host);
    this.bytes += size;
    return full;
  }

  /** The last part (undefined when no host is left). */
  finish(): AgentInventory | undefined {
    return this.hosts.length > 0 ? this.close(true) : undefined;
  }

  private close(last: boolean): AgentInventory {
    const part: AgentInventory = {
      ...this.base,
      hosts: this.hosts,
      part: ++this.part,
      ...(last ? { last: true } : {}),
    };
    this.hosts = [];
    this.bytes = 0;
    return part;
  }
}

const jsonBytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value));

/**
 * Runs `fn` over `items`, at most `limit` at once, and yields the results as they complete. Nothing
 * new starts while the caller holds a result, so a slow consumer slows the listing down. `fn` should
 * not reject: a rejection ends the iteration (the others still run to their end, unheard).
 */
export async function* inCompletionOrder<T, R>(
  items: Iterable<T>,
  limit: number,
  fn: (item: T) => Promise<R>,
): AsyncGenerator<R> {
  const source = items[Symbol.iterator]();
  const running = new Map<number, Promise<{ id: number; result: R }>>();
  let next = 0;
  const launch = (): boolean => {
    const item = source.next();
    if (item.done) return false;
    const id = next++;
    running.set(
      id,
      fn(item.value).then((result) => ({ id, result })),
    );
    return true;
  };
  while (running.size < Math.max(1, limit) && launch()) {}
  while (running.size > 0) {
    const { id, result } = await Promise.race(running.values());
    running.delete(id);
    launch();
    yield result;
  }
}

async function hostInventory(driver: HypervisorDriver, timeoutMs: number): Promise<HostInventory> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new DriverError(
            DriverErrorCode.hostUnreachable,
            `inventory of ${driver.hostId} timed out after ${timeoutMs} ms`,
          ),
        ),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([driver.inventory(), timeout]);
  } catch (err) {
    return { hostId: driver.hostId, reachable: false, error: toErrorInfo(err), domains: [] };
  } finally {
    clearTimeout(timer);
  }
}
