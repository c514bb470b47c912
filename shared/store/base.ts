/** Small helpers over the document client: reads, paged queries with opaque cursors, transactions. */

import type { QueryCommandOutput, TransactWriteCommandInput } from "@aws-sdk/lib-dynamodb";
import {
  BatchGetCommand,
  GetCommand,
  QueryCommand,
  type QueryCommandInput,
  TransactWriteCommand,
} from "@aws-sdk/lib-dynamodb";
import { ValidationError } from "../errors.ts";
import type { Db } from "./client.ts";
import type { Key } from "./keys.ts";

export type TxItem = NonNullable<TransactWriteCommandInput["TransactItems"]>[number];
export type Page<T> = { items: T[]; nextCursor: string | null };

export async function getItem<T>(db: Db, key: Key, consistent = true): Promise<T | undefined> {
  const out = await db.doc.send(
    new GetCommand({ TableName: db.table, Key: key, ConsistentRead: consistent }),
  );
  return out.Item as T | undefined;
}

/** Keys one BatchGetItem call may ask for (DynamoDB's limit). */
const BATCH_GET_MAX_KEYS = 100;
/** BatchGetItem calls in flight at once for one read of many keys. */
const BATCH_GETS_AT_ONCE = 4;
/** Rounds of retrying the keys DynamoDB left unprocessed (throttled, or over 16 MB) before giving up. */
const BATCH_GET_MAX_ROUNDS = 8;

/**
 * The items at `keys` (consistent reads by default), in BatchGetItem calls of 100 keys, a few at
 * once, retrying the keys DynamoDB leaves unprocessed with backoff, as its documentation asks.
 * Returned by `itemKey`; a missing item is absent from the map. Throws when keys stay unprocessed.
 */
export async function batchGetItems<T>(
  db: Db,
  keys: readonly Key[],
  consistent = true,
): Promise<Map<string, T>> {
  const found = new Map<string, T>();
  const unique = [...new Map(keys.map((k) => [itemKey(k), { pk: k.pk, sk: k.sk }])).values()];
  const chunks: Record<string, unknown>[][] = [];
  for (let i = 0; i < unique.length; i += BATCH_GET_MAX_KEYS)
    chunks.push(unique.slice(i, i + BATCH_GET_MAX_KEYS));
  const readChunk = async (chunk: Record<string, unknown>[]) => {
    let pending = chunk;
    for (let round = 0; pending.length > 0; round++) {
      if (round === BATCH_GET_MAX_ROUNDS)
        throw new Error(`BatchGetItem left ${pending.length} keys unprocessed after ${round} rounds`);
      if (round > 0)
        await new Promise((r) => setTimeout(r, (25 << Math.min(round, 6)) * (0.5 + Math.random())));
      const out = await db.doc.send(
        new BatchGetCommand({
          RequestItems: { [db.table]: { Keys: pending, ConsistentRead: consistent } },
        }),
      );
      for (const item of out.Responses?.[db.table] ?? []) found.set(itemKey(item as Key), item as T);
      pending = out.UnprocessedKeys?.[db.table]?.Keys ?? [];
    }
  };
  let next = 0;
  const worker = async () => {
    while (next < chunks.length) await readChunk(chunks[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(BATCH_GETS_AT_ONCE, chunks.length) }, worker));
  return found;
}

/** An item's key as one string, for maps of items read in a batch (a NUL cannot occur in a key). */
export const itemKey = (k: Key) => `${k.pk}\u0000${k.sk}`;

export function encodeCursor(key: Record<string, unknown> | undefined): string | null {
  if (!key) return null;
  const bytes = new TextEncoder().encode(JSON.stringify(key));
  return btoa(String.fromCharCode(...bytes))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replaceAll("=", "");
}

export function decodeCursor(cursor: string | undefined): Record<string, unknown> | undefined {
  if (!cursor) return undefined;
  try {
    const b64 = cursor.replaceAll("-", "+").replaceAll("_", "/");
    const text = new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
    const parsed = JSON.parse(text) as unknown;
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed))
      return parsed as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new ValidationError("cursor is not valid");
}

/** One page of a query. With a filter, DynamoDB may return fewer than `limit` items and a cursor. */
export async function queryPage<T>(
  db: Db,
  input: Omit<QueryCommandInput, "TableName" | "ExclusiveStartKey" | "Limit">,
  opts: { limit: number; cursor?: string | undefined },
): Promise<Page<T>> {
  let out: QueryCommandOutput;
  try {
    out = await db.doc.send(
      new QueryCommand({
        ...input,
        TableName: db.table,
        Limit: opts.limit,
        ExclusiveStartKey: decodeCursor(opts.cursor),
      }),
    );
  } catch (err) {
    // A well-formed cursor from another listing: DynamoDB refuses its start key.
    if (opts.cursor && (err as { name?: string }).name === "ValidationException") {
      throw new ValidationError("cursor does not belong to this listing");
    }
    throw err;
  }
  return { items: (out.Items ?? []) as T[], nextCursor: encodeCursor(out.LastEvaluatedKey) };
}

/** Every item of a query, following pages. */
export async function queryAll<T>(
  db: Db,
  input: Omit<QueryCommandInput, "TableName" | "ExclusiveStartKey">,
): Promise<T[]> {
  const items: T[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const out = await db.doc.send(
      new QueryCommand({ ...input, TableName: db.table, ExclusiveStartKey: start }),
    );
    items.push(...((out.Items ?? []) as T[]));
    start = out.LastEvaluatedKey;
  } while (start);
  return items;
}

export async function transact(db: Db, items: TxItem[]): Promise<void> {
  await db.doc.send(new TransactWriteCommand({ TransactItems: items }));
}

/** A condition: an expression with its own placeholders (`#name`, `:value`). */
export type Condition = { expr: string; names?: Record<string, string>; values?: Record<string, unknown> };

export type Changes = {
  /** Attributes to set (top-level names, or dotted paths into maps such as `freeDevices.gpu`). */
  set?: Record<string, unknown>;
  /** Attributes to add to (numbers; negative to subtract). */
  inc?: Record<string, number>;
  remove?: string[];
};

/**
 * Builds an Update for a transaction or an UpdateCommand: placeholders are generated for every name
 * and value, so callers write plain attribute names and cannot collide with reserved words.
 */
export function updateOf(table: string, key: Key, changes: Changes, condition?: Condition) {
  const names: Record<string, string> = { ...(condition?.names ?? {}) };
  const values: Record<string, unknown> = { ...(condition?.values ?? {}) };
  let n = 0;
  const path = (p: string) =>
    p
      .split(".")
      .map((part) => {
        const ph = `#u${n++}`;
        names[ph] = part;
        return ph;
      })
      .join(".");
  const val = (v: unknown) => {
    const ph = `:u${n++}`;
    values[ph] = v;
    return ph;
  };
  const sets = Object.entries(changes.set ?? {}).map(([k, v]) => `${path(k)} = ${val(v)}`);
  for (const [k, v] of Object.entries(changes.inc ?? {})) {
    const p = path(k);
    sets.push(`${p} = if_not_exists(${p}, ${val(0)}) + ${val(v)}`);
  }
  const removes = (changes.remove ?? []).map(path);
  const expr = [
    sets.length ? `SET ${sets.join(", ")}` : "",
    removes.length ? `REMOVE ${removes.join(", ")}` : "",
  ]
    .filter(Boolean)
    .join(" ");
  return {
    TableName: table,
    Key: key,
    UpdateExpression: expr,
    ExpressionAttributeNames: names,
    ...(Object.keys(values).length ? { ExpressionAttributeValues: values } : {}),
    ...(condition ? { ConditionExpression: condition.expr } : {}),
  };
}

export function putOf(table: string, item: Record<string, unknown>, condition?: Condition) {
  return {
    TableName: table,
    Item: item,
    ...(condition ? { ConditionExpression: condition.expr } : {}),
    ...(condition?.names ? { ExpressionAttributeNames: condition.names } : {}),
    ...(condition?.values ? { ExpressionAttributeValues: condition.values } : {}),
  };
}

export function deleteOf(table: string, key: Key, condition?: Condition) {
  return {
    TableName: table,
    Key: key,
    ...(condition ? { ConditionExpression: condition.expr } : {}),
    ...(condition?.names ? { ExpressionAttributeNames: condition.names } : {}),
    ...(condition?.values ? { ExpressionAttributeValues: condition.values } : {}),
  };
}

/** Condition: the item does not exist yet. */
export const notExists: Condition = { expr: "attribute_not_exists(pk)" };
/** Condition: the item exists. */
export const exists: Condition = { expr: "attribute_exists(pk)" };
