/** Small reads and writes the host maintenance services share (drain, evacuation). */
import { getItem, queryAll, type TxItem, transact } from "../store/base.ts";
import { isTransactionConflict } from "../store/errors.ts";
import type { ClaimItem, OpItem } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";

/** Items of a host's partition whose sort key starts with `prefix` (strongly consistent). */
export async function hostItems<T>(deps: Deps, hostId: string, prefix: string): Promise<T[]> {
  return queryAll<T>(deps.db, {
    KeyConditionExpression: "pk = :pk AND begins_with(sk, :prefix)",
    ExpressionAttributeValues: { ":pk": keys.host(hostId).pk, ":prefix": prefix },
    ConsistentRead: true,
  });
}

/** Every capacity claim on a host. */
export async function hostClaims(deps: Deps, hostId: string): Promise<ClaimItem[]> {
  return hostItems<ClaimItem>(deps, hostId, "CLAIM#");
}

/** A VM's operation of sequence number `seq`, if it was submitted. */
export async function opAtSeq(deps: Deps, vmId: string, seq: number): Promise<OpItem | undefined> {
  const found = await queryAll<Pick<OpItem, "id">>(deps.db, {
    IndexName: "gsi1",
    KeyConditionExpression: "gsi1pk = :pk AND gsi1sk = :sk",
    ExpressionAttributeValues: {
      ":pk": keys.opVmIndex(vmId, seq).gsi1pk,
      ":sk": keys.opVmIndex(vmId, seq).gsi1sk,
    },
  });
  // The index is eventually consistent: read the operation itself.
  return found[0] ? getItem<OpItem>(deps.db, keys.op(found[0].id)) : undefined;
}

/**
 * A transaction on a host item that claims and releases also write (they bump its counters): a
 * conflict with one of them is retried a few times. Condition failures are the caller's to handle.
 */
export async function transactOnHost(deps: Deps, items: TxItem[]): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await transact(deps.db, items);
    } catch (err) {
      if (!isTransactionConflict(err) || attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 10 + Math.random() * 40 * (attempt + 1)));
    }
  }
}
