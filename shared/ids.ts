import { ulid } from "ulid";

/**
 * The random part of ids, from the platform's cryptographic generator (Node and Workers), drawn 1 KiB
 * at a time: ulid's default asks for one byte per character, 16 calls an id, which made id generation
 * a visible share of an API request's CPU (bench section 4).
 */
const pool = new Uint32Array(256);
let next = pool.length;
function prng(): number {
  if (next === pool.length) {
    crypto.getRandomValues(pool);
    next = 0;
  }
  return pool[next++]! / 0x1_0000_0000;
}

/** Time-ordered ids with a type prefix: `vm-01j…`, `op-01j…`. Lower case so they are DNS-safe. */
export const newId = (prefix: "vm" | "op" | "cl" | "ev" | "req" | "task" | "drain") =>
  `${prefix}-${ulid(undefined, prng).toLowerCase()}`;
