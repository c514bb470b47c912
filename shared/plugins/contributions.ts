/** Joining resource hooks' contributions to a transaction the scheduler or finisher builds. */
import type { UsherError } from "../errors.ts";
import type { TxItem } from "../store/base.ts";
import type { Contribution } from "./types.ts";

export type Joined = {
  /** The caller's items, then each contribution's. */
  items: TxItem[];
  /** Where each contribution's items start in `items`. */
  offsets: number[];
};

/** Appends the contributions' items after the caller's own. */
export function joinContributions(own: TxItem[], contributions: readonly Contribution[]): Joined {
  const items = [...own];
  const offsets: number[] = [];
  for (const c of contributions) {
    offsets.push(items.length);
    items.push(...c.items);
  }
  return { items, offsets };
}

/** Attributes the contributions set on and remove from one VM, to merge into the caller's update. */
export function vmChanges(
  contributions: readonly Contribution[],
  vmId: string,
): { set: Record<string, unknown>; remove: string[] } {
  const set: Record<string, unknown> = {};
  const remove: string[] = [];
  for (const c of contributions) {
    Object.assign(set, c.vmSet?.[vmId] ?? {});
    remove.push(...(c.vmRemove?.[vmId] ?? []));
  }
  return { set, remove: remove.filter((f) => !(f in set)) };
}

/**
 * A transaction failed with these condition indexes: what the first contribution whose item failed
 * says (an error to fail with, or `retry`), or undefined when none of theirs failed.
 */
export function contributionVerdict(
  joined: Joined,
  contributions: readonly Contribution[],
  failed: readonly number[],
): UsherError | "retry" | undefined {
  for (let k = 0; k < contributions.length; k++) {
    const start = joined.offsets[k]!;
    const end = start + contributions[k]!.items.length;
    const mine = failed.filter((i) => i >= start && i < end).map((i) => i - start);
    if (mine.length) return contributions[k]!.onConditionFailed?.(mine) ?? "retry";
  }
  return undefined;
}
