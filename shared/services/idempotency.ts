/**
 * Idempotency-Key handling. The record of a request's response is written in the same transaction as
 * the request's effects, so either both exist or neither: a retry after a crash either replays the
 * stored response or runs the request for the first time. Same key, other body → 409.
 */
import { ConflictError, ErrorCode } from "../errors.ts";
import { getItem, putOf, type TxItem } from "../store/base.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";

export type StoredResponse = { status: number; body: unknown };
export type IdempotencyRequest = { scope: string; key: string; hash: string };

type IdemItem = { hash: string; status: number; body: string; expiresAt: number };

/** SHA-256 of the method, path and body, hex. */
export async function requestHash(method: string, path: string, body: unknown): Promise<string> {
  const bytes = new TextEncoder().encode(`${method} ${path}\n${JSON.stringify(body ?? null)}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function lookup(deps: Deps, req: IdempotencyRequest): Promise<StoredResponse | undefined> {
  const item = await getItem<IdemItem>(deps.db, keys.idempotency(req.scope, req.key));
  if (!item || item.expiresAt < Math.floor(deps.now().getTime() / 1000)) return undefined;
  if (item.hash !== req.hash) {
    throw new ConflictError(
      ErrorCode.idempotencyMismatch,
      "Idempotency-Key was already used with a different request",
    );
  }
  return { status: item.status, body: JSON.parse(item.body) };
}

function recordItem(deps: Deps, req: IdempotencyRequest, response: StoredResponse): TxItem {
  const now = Math.floor(deps.now().getTime() / 1000);
  return {
    // Only one request per key: a live record wins; an expired one (TTL not yet swept) may be replaced.
    Put: putOf(
      deps.db.table,
      {
        ...keys.idempotency(req.scope, req.key),
        type: "idempotency",
        hash: req.hash,
        status: response.status,
        body: JSON.stringify(response.body),
        expiresAt: now + deps.config.idempotencyTtlSeconds,
      },
      { expr: "attribute_not_exists(pk) OR expiresAt < :now", values: { ":now": now } },
    ),
  };
}

/**
 * Runs `fn` at most once per key. `fn` receives `record(response)`, a transaction item it must commit
 * together with its effects (or null without a key). A replay returns the stored response.
 */
export async function idempotent(
  deps: Deps,
  req: IdempotencyRequest | undefined,
  fn: (record: (r: StoredResponse) => TxItem[]) => Promise<StoredResponse>,
): Promise<StoredResponse & { replayed: boolean }> {
  if (!req) return { ...(await fn(() => [])), replayed: false };
  const seen = await lookup(deps, req);
  if (seen) return { ...seen, replayed: true };
  try {
    return { ...(await fn((r) => [recordItem(deps, req, r)])), replayed: false };
  } catch (err) {
    // A concurrent request with the same key may have committed first (our transaction then failed,
    // on the key or on what it guards, such as a name): replay its response.
    const now = await lookup(deps, req);
    if (now) return { ...now, replayed: true };
    throw err;
  }
}
