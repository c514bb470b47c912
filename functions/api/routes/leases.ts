import { createRoute } from "@hono/zod-openapi";
import { Lease, RenewLease } from "../../../shared/contracts/lease.ts";
import type { Deps } from "../../../shared/services/context.ts";
import { getLease, renewLease } from "../../../shared/services/leases.ts";
import { getVmItem } from "../../../shared/services/vms.ts";
import { idempotencyOf } from "../middleware/idempotency.ts";
import { actOnResource, body, errors, IdParam, json, router, security, send } from "./common.ts";

const tags = ["VMs"];

/** A VM's lease (the leases plugin); 404 when the site runs no leases plugin. */
export function leaseRoutes(deps: Deps) {
  const app = router();

  app.openapi(
    createRoute({
      method: "get",
      path: "/vms/{id}/lease",
      tags,
      security,
      summary: "Get a VM's lease",
      request: { params: IdParam },
      responses: { 200: json(Lease, "The lease"), ...errors },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      c.set("action", "vm.lease.get");
      await actOnResource(c, () => getVmItem(deps, id));
      return c.json(await getLease(deps, c.get("principal"), id), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/vms/{id}/lease",
      tags,
      security,
      summary: "Renew a VM's lease: extend it, or set when it ends",
      request: { params: IdParam, ...body(RenewLease) },
      responses: { 200: json(Lease, "The renewed lease"), ...errors },
    }),
    async (c) => {
      const payload = c.req.valid("json");
      const { id } = c.req.valid("param");
      c.set("action", "vm.lease.renew");
      await actOnResource(c, () => getVmItem(deps, id));
      const ctx = {
        principal: c.get("principal"),
        requestId: c.get("requestId"),
        idempotency: await idempotencyOf(c, payload),
      };
      return send(await renewLease(deps, ctx, id, payload)) as never;
    },
  );

  return app;
}
