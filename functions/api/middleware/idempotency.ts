import type { Context } from "hono";
import { ValidationError } from "../../../shared/errors.ts";
import { type IdempotencyRequest, requestHash } from "../../../shared/services/idempotency.ts";
import type { ApiEnv } from "../env.ts";

const VALID_KEY = /^[\x21-\x7e]{1,255}$/;

/** The request's Idempotency-Key, scoped to the caller and bound to a hash of the request. */
export async function idempotencyOf(
  c: Context<ApiEnv>,
  body: unknown,
): Promise<IdempotencyRequest | undefined> {
  const key = c.req.header("idempotency-key");
  if (key === undefined) return undefined;
  if (!VALID_KEY.test(key))
    throw new ValidationError("Idempotency-Key must be 1 to 255 visible ASCII characters");
  const p = c.get("principal");
  return {
    scope: JSON.stringify([p.project, p.subject]),
    key,
    hash: await requestHash(c.req.method, c.req.path, body),
  };
}
