import { createRoute } from "@hono/zod-openapi";
import { z } from "zod";
import { isOperator } from "../../../shared/auth/principal.ts";
import { CreateHost, Host, HostList, PatchHost } from "../../../shared/contracts/host.ts";
import { ErrorCode, UsherError } from "../../../shared/errors.ts";
import type { Deps } from "../../../shared/services/context.ts";
import { createHost, getHost, listHosts, patchHost } from "../../../shared/services/hosts.ts";
import { adminOnly } from "../middleware/auth.ts";
import { idempotencyOf } from "../middleware/idempotency.ts";
import { body, errors, IdParam, json, PageQuery, router, security, send } from "./common.ts";

const tags = ["Hosts"];

/** Hosts: admins register and change them; operators and admins read them. */
export function hostRoutes(deps: Deps) {
  const app = router();
  const operatorOnly = (p: Parameters<typeof isOperator>[0]) => {
    if (!isOperator(p))
      throw new UsherError(ErrorCode.forbidden, "reading hosts needs the operator or admin role");
  };
  app.openapi(
    createRoute({
      method: "get",
      path: "/hosts",
      tags,
      security,
      summary: "List hosts",
      request: { query: PageQuery.extend({ site: z.string().max(63).optional() }) },
      responses: { 200: json(HostList, "Hosts"), ...errors },
    }),
    async (c) => {
      operatorOnly(c.get("principal"));
      const q = c.req.valid("query");
      return c.json(await listHosts(deps, q.site, q), 200);
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/hosts/{id}",
      tags,
      security,
      summary: "Get a host",
      request: { params: IdParam },
      responses: { 200: json(Host, "The host"), ...errors },
    }),
    async (c) => {
      operatorOnly(c.get("principal"));
      return c.json(await getHost(deps, c.req.valid("param").id), 200);
    },
  );
  app.use("/hosts", async (c, next) => (c.req.method === "POST" ? adminOnly(c, next) : next()));
  app.use("/hosts/:id", async (c, next) => (c.req.method === "PATCH" ? adminOnly(c, next) : next()));
  app.openapi(
    createRoute({
      method: "post",
      path: "/hosts",
      tags,
      security,
      summary: "Register a host (admin)",
      request: body(CreateHost),
      responses: { 201: json(Host, "Registered"), ...errors },
    }),
    async (c) => {
      const payload = c.req.valid("json");
      const ctx = {
        actor: c.get("principal").subject,
        requestId: c.get("requestId"),
        idempotency: await idempotencyOf(c, payload),
      };
      return send(await createHost(deps, ctx, payload)) as never;
    },
  );
  app.openapi(
    createRoute({
      method: "patch",
      path: "/hosts/{id}",
      tags,
      security,
      summary: "Change a host (admin)",
      request: { params: IdParam, ...body(PatchHost) },
      responses: { 200: json(Host, "Changed"), ...errors },
    }),
    async (c) =>
      c.json(
        await patchHost(
          deps,
          c.get("principal").subject,
          c.get("requestId"),
          c.req.valid("param").id,
          c.req.valid("json"),
        ),
        200,
      ),
  );
  return app;
}
