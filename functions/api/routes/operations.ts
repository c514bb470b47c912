import { createRoute } from "@hono/zod-openapi";
import { z } from "zod";
import { Operation, OperationList } from "../../../shared/contracts/vm.ts";
import type { Deps } from "../../../shared/services/context.ts";
import { getOpItem, listOps, waitForOp } from "../../../shared/services/operations.ts";
import { getVmItem } from "../../../shared/services/vms.ts";
import { actOnResource, errors, IdParam, json, PageQuery, router, security } from "./common.ts";

const tags = ["Operations"];

export function operationRoutes(deps: Deps) {
  const app = router();
  app.openapi(
    createRoute({
      method: "get",
      path: "/operations/{id}",
      tags,
      security,
      summary: "Get an operation; with waitSeconds, wait until it is terminal",
      request: {
        params: IdParam,
        query: z.object({ waitSeconds: z.coerce.number().int().min(0).max(20).default(0) }),
      },
      responses: { 200: json(Operation, "The operation"), ...errors },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      await actOnResource(c, () => getOpItem(deps, id));
      return c.json(await waitForOp(deps, c.get("principal"), id, c.req.valid("query").waitSeconds), 200);
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/operations",
      tags,
      security,
      summary: "A VM's operations in submission order",
      request: { query: PageQuery.extend({ vmId: z.string().min(1).max(64) }) },
      responses: { 200: json(OperationList, "Operations"), ...errors },
    }),
    async (c) => {
      const q = c.req.valid("query");
      await actOnResource(c, () => getVmItem(deps, q.vmId));
      return c.json(await listOps(deps, c.get("principal"), q.vmId, q), 200);
    },
  );
  return app;
}
