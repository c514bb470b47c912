import { createMiddleware } from "hono/factory";
import { newId } from "../../../shared/ids.ts";
import type { Logger } from "../../../shared/log.ts";
import type { ApiEnv } from "../env.ts";

const VALID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Gives every request an id (the caller's `X-Request-Id` when well formed), echoes it in the response,
 * logs the request, and hands a logger carrying it to the handlers. The id follows the operation
 * through the queues to the agent and back.
 */
export function requestId(opts: { log: Logger }) {
  if (!opts.log) throw new Error("requestId middleware needs a logger");
  return createMiddleware<ApiEnv>(async (c, next) => {
    const given = c.req.header("x-request-id");
    const id = given && VALID.test(given) ? given : newId("req");
    const log = opts.log.child({ requestId: id });
    c.set("requestId", id);
    c.set("log", log);
    const started = performance.now();
    await next();
    c.header("x-request-id", id);
    log.info("request", {
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      ms: Math.round(performance.now() - started),
    });
  });
}
