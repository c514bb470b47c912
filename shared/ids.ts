import { ulid } from "ulid";

/** Time-ordered ids with a type prefix: `vm-01j…`, `op-01j…`. Lower case so they are DNS-safe. */
export const newId = (prefix: "vm" | "op" | "cl" | "ev" | "req" | "task" | "drain") =>
  `${prefix}-${ulid().toLowerCase()}`;
