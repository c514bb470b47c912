import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { z } from "zod";
import { isAdmin } from "../../../shared/auth/principal.ts";
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

/**
 * Tells `request` plugins which project an admin's request acts on (the audit files its record
 * there; see middleware/plugins.ts). A no-op for everyone else: users act in their own project only,
 * and a user naming another one is refused, a refusal that stays in the user's own project.
 */
export function actOn(c: Context<ApiEnv>, project: string | undefined): void {
  if (project !== undefined && isAdmin(c.get("principal"))) c.set("project", project);
}

/**
 * `actOn` the project of the resource an admin's request names by id: only admins pay for the read.
 * A missing resource (a 404 to come) leaves the record in the admin's own project.
 */
export async function actOnResource(
  c: Context<ApiEnv>,
  load: () => Promise<{ project: string } | undefined>,
): Promise<void> {
  if (isAdmin(c.get("principal"))) actOn(c, (await load())?.project);
}
