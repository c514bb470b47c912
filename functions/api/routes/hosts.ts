import { createRoute } from "@hono/zod-openapi";
import { z } from "zod";
import { isOperator } from "../../../shared/auth/principal.ts";
import { CreateHost, Host, HostList, PatchHost } from "../../../shared/contracts/host.ts";
import { ErrorCode, UsherError } from "../../../shared/errors.ts";
import type { Deps } from "../../../shared/services/context.ts";
import { createHost, listHosts, patchHost } from "../../../shared/services/hosts.ts";
import {
  enableHost,
  getHostDetail,
  requestDrain,
  requestEvacuation,
  requestEvacuationConfirm,
} from "../../../shared/services/maintenance.ts";
import { unregisterHost } from "../../../shared/services/unregister-host.ts";
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
      summary: "Get a host, with its drain's and evacuation's progress",
      request: { params: IdParam },
      responses: { 200: json(Host, "The host"), ...errors },
    }),
    async (c) => {
      operatorOnly(c.get("principal"));
      return c.json(await getHostDetail(deps, c.req.valid("param").id), 200);
    },
  );
  app.use("/hosts", async (c, next) => (c.req.method === "POST" ? adminOnly(c, next) : next()));
  app.use("/hosts/:id", async (c, next) =>
    c.req.method === "PATCH" || c.req.method === "DELETE" ? adminOnly(c, next) : next(),
  );
  // Maintenance (drain, evacuate, confirm, enable): admins only.
  app.use("/hosts/:id/*", async (c, next) => (c.req.method === "POST" ? adminOnly(c, next) : next()));
  const maintenance = [
    {
      path: "drain",
      status: 202,
      run: requestDrain,
      summary:
        "Drain a host (admin): no new placements, its running VMs live-migrate away, then it is drained. Again on a draining host: retries what failed",
    },
    {
      path: "evacuate",
      status: 202,
      run: requestEvacuation,
      summary:
        "Evacuate a down host (admin): fence it through its site's agent, then restart its VMs elsewhere once the fence is confirmed",
    },
    {
      path: "evacuate/confirm",
      status: 202,
      run: requestEvacuationConfirm,
      summary:
        "Confirm a reported fence (admin; when USHER_EVACUATE_CONFIRM is agent+admin): the evacuation restarts the host's VMs elsewhere",
    },
    {
      path: "enable",
      status: 200,
      run: enableHost,
      summary:
        "Enable a host again (admin): ends a drain or a finished evacuation; a down host when it reports",
    },
  ] as const;
  for (const m of maintenance) {
    app.openapi(
      createRoute({
        method: "post",
        path: `/hosts/{id}/${m.path}`,
        tags,
        security,
        summary: m.summary,
        request: { params: IdParam },
        responses: { [m.status]: json(Host, "The host, with its progress"), ...errors },
      }),
      async (c) => {
        const ctx = { principal: c.get("principal"), requestId: c.get("requestId") };
        return c.json(await m.run(deps, ctx, c.req.valid("param").id), m.status) as never;
      },
    );
  }
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
  app.openapi(
    createRoute({
      method: "delete",
      path: "/hosts/{id}",
      tags,
      security,
      summary:
        "Unregister a host (admin): one that is not enabled and holds no VM (disable or drain it first; evacuate a failed one)",
      request: { params: IdParam },
      responses: { 200: json(Host, "The host as it was when unregistered"), ...errors },
    }),
    async (c) => {
      const ctx = {
        actor: c.get("principal").subject,
        requestId: c.get("requestId"),
        idempotency: await idempotencyOf(c, {}),
      };
      return send(await unregisterHost(deps, ctx, c.req.valid("param").id)) as never;
    },
  );
  return app;
}
