import { createMiddleware } from "hono/factory";
import { isAdmin } from "../../../shared/auth/principal.ts";
import type { TokenVerifier } from "../../../shared/auth/tokens.ts";
import { AuthError, ErrorCode, UsherError } from "../../../shared/errors.ts";
import type { ApiEnv } from "../env.ts";

/** Requires `Authorization: Bearer <JWT>`; sets `principal`. Failures are 401 problems. */
export function bearerAuth(opts: { verify: TokenVerifier }) {
  if (typeof opts.verify !== "function") throw new Error("bearerAuth needs a token verifier");
  return createMiddleware<ApiEnv>(async (c, next) => {
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/i.exec(header);
    if (!match?.[1]) throw new AuthError(ErrorCode.unauthenticated, "missing bearer token");
    c.set("principal", await opts.verify(match[1]));
    await next();
  });
}

/** Requires the admin role. */
export const adminOnly = createMiddleware<ApiEnv>(async (c, next) => {
  if (!isAdmin(c.get("principal"))) throw new UsherError(ErrorCode.forbidden, "this needs the admin role");
  await next();
});
