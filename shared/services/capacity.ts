/**
 * Capacity claims. A claim decrements a host's free counters under a `>=` condition in the same
 * transaction that records the claim item, so no host is ever over capacity, however many schedulers
 * run at once; a release deletes the claim (it must exist) and adds the amounts back.
 */
import { deleteOf, exists, getItem, notExists, putOf, type TxItem, updateOf } from "../store/base.ts";
import type { ClaimItem, HostItem } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";

export async function getClaim(deps: Deps, hostId: string, vmId: string): Promise<ClaimItem | undefined> {
  return getItem<ClaimItem>(deps.db, keys.claim(hostId, vmId));
}

/**
 * Items that claim `claim`'s amounts on `host`, as the placement read it. Index 0: the host; index 1:
 * the claim.
 */
export function claimItems(
  deps: Deps,
  host: Pick<HostItem, "id" | "settingsVersion">,
  claim: ClaimItem,
): TxItem[] {
  const devices = Object.entries(claim.devices).filter(([, n]) => n > 0);
  const names: Record<string, string> = {
    "#state": "state",
    "#sv": "settingsVersion",
    ...(devices.length ? { "#fd": "freeDevices" } : {}),
  };
  const values: Record<string, unknown> = { ":enabled": "enabled", ":v": claim.vcpus, ":m": claim.memoryMiB };
  const conds = ["#state = :enabled", "freeVcpus >= :v", "freeMemoryMiB >= :m"];
  // Settings as the placement saw them (its labels decided the host): an admin's change since retries.
  if (host.settingsVersion === undefined) conds.push("attribute_not_exists(#sv)");
  else {
    conds.push("#sv = :sv");
    values[":sv"] = host.settingsVersion;
  }
  const inc: Record<string, number> = {
    freeVcpus: -claim.vcpus,
    freeMemoryMiB: -claim.memoryMiB,
    version: 1,
  };
  devices.forEach(([model, n], i) => {
    names[`#d${i}`] = model;
    values[`:d${i}`] = n;
    conds.push(`#fd.#d${i} >= :d${i}`);
    inc[`freeDevices.${model}`] = -n;
  });
  return [
    {
      // No over-commit: the host must be enabled, as configured, with every amount free at write time.
      Update: updateOf(
        deps.db.table,
        keys.host(host.id),
        { inc, set: { updatedAt: claim.createdAt } },
        { expr: conds.join(" AND "), names, values },
      ),
    },
    // One claim per VM per host: a second claim for the same VM here would double-book.
    {
      Put: putOf(deps.db.table, { ...claim, ...keys.claim(claim.hostId, claim.vmId) }, notExists),
    },
  ];
}

/** Items that release a claim. The claim must still exist, so a release can never happen twice. */
export function releaseItems(deps: Deps, claim: ClaimItem): TxItem[] {
  const inc: Record<string, number> = { freeVcpus: claim.vcpus, freeMemoryMiB: claim.memoryMiB, version: 1 };
  for (const [model, n] of Object.entries(claim.devices)) if (n > 0) inc[`freeDevices.${model}`] = n;
  return [
    {
      Delete: deleteOf(deps.db.table, keys.claim(claim.hostId, claim.vmId), {
        expr: "attribute_exists(pk) AND opId = :op",
        values: { ":op": claim.opId },
      }),
    },
    { Update: updateOf(deps.db.table, keys.host(claim.hostId), { inc }, exists) },
  ];
}
