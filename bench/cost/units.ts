/**
 * AWS's billing rules where the local stand-ins do not follow them, and the assumptions the figures
 * rest on (each stated here, once).
 *
 * DynamoDB Local returns `ConsumedCapacity` for every read and write (checked: GetItem, Query,
 * PutItem, UpdateItem, TransactWriteItems, BatchWriteItem, with per-table and per-index detail), and
 * its figures follow AWS's size rules (1 KB per write unit, 4 KB per read unit, halved for eventually
 * consistent reads, 2× for transactions, index writes counted). Two differences are corrected here:
 * - In a transaction it doubles the index writes too. AWS bills the 2× on the base table only; index
 *   propagation stays 1× (AWS's own DynamoDB cost calculator, verified against live
 *   ReturnConsumedCapacity: raw.githubusercontent.com/aws/agent-toolkit-for-aws/main/skills/
 *   specialized-skills/database-skills/amazon-dynamodb/scripts/calculate_costs.py).
 * - A Query that finds nothing reports 0 units. AWS bills every read request at least one 4 KB read
 *   (0.5 RRU eventually consistent, 1 strongly consistent), as it does a GetItem of a missing item.
 * And refused conditional writes report nothing locally; meter.ts counts AWS's minimum for them.
 */

export const DYNAMO_READS = new Set(["GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"]);
export const DYNAMO_WRITES = new Set([
  "PutItem",
  "UpdateItem",
  "DeleteItem",
  "BatchWriteItem",
  "TransactWriteItems",
]);

type Capacity = {
  CapacityUnits?: number;
  Table?: { CapacityUnits?: number };
  GlobalSecondaryIndexes?: Record<string, { CapacityUnits?: number }>;
  LocalSecondaryIndexes?: Record<string, { CapacityUnits?: number }>;
};

/** The units AWS would bill for one call, from what DynamoDB Local reported: table and indexes. */
export function billedDynamoUnits(
  command: string,
  input: Record<string, unknown>,
  consumed: unknown,
): { units: number; table: number; indexes: number } {
  const entries = (Array.isArray(consumed) ? consumed : consumed ? [consumed] : []) as Capacity[];
  let table = 0;
  let indexes = 0;
  for (const c of entries) {
    const onIndexes = [
      ...Object.values(c.GlobalSecondaryIndexes ?? {}),
      ...Object.values(c.LocalSecondaryIndexes ?? {}),
    ].reduce((n, i) => n + (i.CapacityUnits ?? 0), 0);
    table += c.Table?.CapacityUnits ?? (c.CapacityUnits ?? 0) - onIndexes;
    indexes += command === "TransactWriteItems" ? onIndexes / 2 : onIndexes;
  }
  if (table + indexes === 0 && (command === "Query" || command === "Scan"))
    table = input.ConsistentRead ? 1 : 0.5;
  return { units: table + indexes, table, indexes };
}

/** SQS bills each 64 KB chunk of a request's payload as one request. */
const SQS_CHUNK_BYTES = 64 * 1024;

const bytes = (s: unknown) => (typeof s === "string" ? Buffer.byteLength(s) : 0);

/** Billed requests for one SQS call, and whether it was a receive that found nothing. */
export function sqsBilledRequests(
  command: string,
  input: unknown,
  output: unknown,
): { requests: number; empty: boolean } {
  let payload = 0;
  let empty = false;
  if (command === "SendMessage") payload = bytes((input as { MessageBody?: string }).MessageBody);
  else if (command === "SendMessageBatch")
    payload = ((input as { Entries?: { MessageBody?: string }[] }).Entries ?? []).reduce(
      (n, e) => n + bytes(e.MessageBody),
      0,
    );
  else if (command === "ReceiveMessage") {
    const messages = (output as { Messages?: { Body?: string }[] }).Messages ?? [];
    empty = messages.length === 0;
    payload = messages.reduce((n, m) => n + bytes(m.Body), 0);
  }
  return { requests: Math.max(1, Math.ceil(payload / SQS_CHUNK_BYTES)), empty };
}

/**
 * Assumed AWS latency of one call from a Lambda function in the same region, used to model billed
 * duration: DynamoDB single-item and query calls 6 ms, transactions 12 ms (two phases), SQS 12 ms.
 * Assumptions, not measurements: DynamoDB Local and fauxqs answer at other speeds.
 */
export function awsLatencyMs(service: "dynamodb" | "sqs", command: string): number {
  if (service === "sqs") return 12;
  return command.startsWith("Transact") ? 12 : 6;
}

/** The memory we assume each Lambda function is given: billed duration is GB-seconds at this size. */
export const LAMBDA_MEMORY_GB = 0.5;

/**
 * An item's stored size by AWS's rules: attribute names plus values (strings and binary by length,
 * numbers about one byte per two digits plus one, booleans and nulls one byte, maps and lists three
 * bytes plus one per element plus their contents), and 100 bytes of overhead per item in the table and
 * in each index it appears in.
 */
export function itemBytes(item: Record<string, unknown>): number {
  let n = 0;
  for (const [k, v] of Object.entries(item)) n += Buffer.byteLength(k) + valueBytes(v);
  return n;
}

function valueBytes(v: unknown): number {
  if (v === null || v === undefined || typeof v === "boolean") return 1;
  if (typeof v === "string") return Buffer.byteLength(v);
  if (typeof v === "number") return Math.ceil(String(Math.abs(v)).replace(/[.-]/g, "").length / 2) + 1;
  if (Array.isArray(v)) return 3 + v.reduce((n: number, x) => n + 1 + valueBytes(x), 0);
  if (v instanceof Uint8Array) return v.byteLength;
  if (v instanceof Set) return [...v].reduce((n: number, x) => n + valueBytes(x), 0);
  if (typeof v === "object")
    return 3 + Object.entries(v).reduce((n, [k, x]) => n + 1 + Buffer.byteLength(k) + valueBytes(x), 0);
  return 0;
}

export const ITEM_OVERHEAD_BYTES = 100;
