import { OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import { Problem } from "../../../shared/contracts/common.ts";
import type { StoredResponse } from "../../../shared/services/idempotency.ts";
import type { ApiEnv } from "../env.ts";
import { validationHook } from "../problem.ts";

/** A router whose validation failures are problem+json. */
export const router = () => new OpenAPIHono<ApiEnv>({ defaultHook: validationHook });

export const json = <T extends z.ZodType>(schema: T, description: string) => ({
  description,
  content: { "application/json": { schema } },
});

export const body = <T extends z.ZodType>(schema: T) => ({
  body: { content: { "application/json": { schema } }, required: true },
});

const problem = { description: "Problem", content: { "application/problem+json": { schema: Problem } } };
/** Error responses every authenticated route may give. */
export const errors = { 400: problem, 401: problem, 403: problem, 404: problem, 409: problem } as const;

export const IdParam = z.object({ id: z.string().min(1).max(64) });
export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(2048).optional(),
});

export const security = [{ bearer: [] }];

/** A stored (possibly replayed) response as an HTTP response. */
export function send(res: StoredResponse & { replayed?: boolean }): Response {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (res.replayed) headers["idempotent-replayed"] = "true";
  return new Response(JSON.stringify(res.body), { status: res.status, headers });
}
