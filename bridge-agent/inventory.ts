/**
 * Inventory: what is really on each host, gathered from the drivers. A host whose driver fails (or
 * takes too long) is reported `reachable: false` with the error, never left out.
 */
import type { AgentInventory, HostInventory } from "../shared/contracts/index.ts";
import type { HypervisorDriver } from "./drivers/driver.ts";
import { DriverError, DriverErrorCode } from "./drivers/errors.ts";
import { toErrorInfo } from "./errors.ts";

/** Asks every driver for its host's inventory at once, each bounded by `timeoutMs`. */
export async function collectInventory(
  drivers: Iterable<HypervisorDriver>,
  ids: { agentId: string; site: string },
  timeoutMs: number,
): Promise<AgentInventory> {
  // Stamped before any host is listed: the control plane compares against records older than this,
  // so an operation that finished while a host was being listed is never mistaken for drift.
  const at = new Date().toISOString();
  const hosts = await Promise.all([...drivers].map((d) => hostInventory(d, timeoutMs)));
  return { type: "inventory", site: ids.site, agentId: ids.agentId, hosts, at };
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
