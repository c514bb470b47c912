import { createMiddleware } from "hono/factory";
import type { RequestRecord } from "../../../shared/plugins/types.ts";
import type { Deps } from "../../../shared/services/context.ts";
import type { ApiEnv } from "../env.ts";

/** Names a request by what it does (`vm.create`, `host.patch`), from its method and path. */
const ROUTES: [method: string, path: RegExp, action: string][] = [
  ["POST", /^\/v1\/vms$/, "vm.create"],
  ["GET", /^\/v1\/vms$/, "vm.list"],
  ["GET", /^\/v1\/vms\/[^/]+$/, "vm.get"],
  ["DELETE", /^\/v1\/vms\/[^/]+$/, "vm.delete"],
  ["POST", /^\/v1\/clusters$/, "cluster.create"],
  ["GET", /^\/v1\/clusters$/, "cluster.list"],
  ["GET", /^\/v1\/clusters\/[^/]+$/, "cluster.get"],
  ["GET", /^\/v1\/operations$/, "operation.list"],
  ["GET", /^\/v1\/operations\/[^/]+$/, "operation.get"],
  ["POST", /^\/v1\/hosts$/, "host.register"],
  ["GET", /^\/v1\/hosts$/, "host.list"],
  ["GET", /^\/v1\/hosts\/[^/]+$/, "host.get"],
  ["PATCH", /^\/v1\/hosts\/[^/]+$/, "host.patch"],
  ["DELETE", /^\/v1\/hosts\/[^/]+$/, "host.unregister"],
  ["GET", /^\/v1\/events$/, "event.list"],
];

export function actionOf(method: string, path: string): string {
  for (const [m, re, action] of ROUTES) if (m === method && re.test(path)) return action;
  return `${method} ${path}`;
}

/**
 * Tells the site's `request` plugins (audit, say) about every request, accepted or rejected, once its
 * response is decided. It does not hold the response: on Workers it runs under `waitUntil`, on Node
 * in the background; `awaitHooks` (Lambda, which freezes after responding) waits for it instead.
 * Routes may name the action more precisely with `c.set("action", "vm.reboot")`, and the project it
 * acted on with `c.set("project", …)` (routes/common.ts `actOn`); the record is then under that
 * project, with the caller's own as `actorProject`. Without it (a request refused before its target
 * was known, say), the record is under the caller's project.
 */
export function requestPlugins(opts: { deps: Deps; awaitHooks?: boolean }) {
  const { deps } = opts;
  if (!deps?.plugins) throw new Error("requestPlugins middleware needs the control plane's deps");
  const active = deps.plugins.list.some((p) => p.hooks.request);
  return createMiddleware<ApiEnv>(async (c, next) => {
    if (!active) return next();
    const started = performance.now();
    await next();
    const status = c.res.status;
    let code: string | undefined;
    if (status >= 400 && c.res.headers.get("content-type")?.includes("json")) {
      code = (
        (await c.res
          .clone()
          .json()
          .catch(() => ({}))) as { code?: string }
      ).code;
    }
    const principal = c.get("principal") as ApiEnv["Variables"]["principal"] | undefined;
    const actorProject = principal?.project;
    const project = c.get("project") ?? actorProject;
    const rec: RequestRecord = {
      requestId: c.get("requestId"),
      method: c.req.method,
      path: c.req.path,
      action: c.get("action") ?? actionOf(c.req.method, c.req.path),
      subject: principal?.subject,
      project,
      ...(project !== actorProject ? { actorProject } : {}),
      status,
      outcome: status < 400 ? "accepted" : status < 500 ? "rejected" : "failed",
      code,
      at: new Date(Date.now() - (performance.now() - started)).toISOString(),
      durationMs: Math.round(performance.now() - started),
    };
    const work = deps.plugins.afterRequest(deps, rec);
    if (opts.awaitHooks) return void (await work);
    try {
      c.executionCtx.waitUntil(work);
    } catch {
      // No execution context (Node): the promise runs on; afterRequest never rejects.
    }
  });
}
