import type { Principal } from "../../shared/auth/principal.ts";
import type { Logger } from "../../shared/log.ts";

/** Hono context variables set by the middleware. */
export type ApiEnv = { Variables: { requestId: string; principal: Principal; log: Logger } };
