import { createRoute } from "@hono/zod-openapi";
import { z } from "zod";
import { VmState } from "../../../shared/contracts/common.ts";
import {
  CreateVm,
  CreateVmResponse,
  OperationResponse,
  Vm,
  VmActionRequest,
  VmList,
} from "../../../shared/contracts/vm.ts";
import type { Deps } from "../../../shared/services/context.ts";
import { createVm, getVm, getVmItem, listVms, requestAction } from "../../../shared/services/vms.ts";
import { idempotencyOf } from "../middleware/idempotency.ts";
import {
  actOn,
  actOnResource,
  body,
  errors,
  IdParam,
  json,
  PageQuery,
  router,
  security,
  send,
} from "./common.ts";

const tags = ["VMs"];

export function vmRoutes(deps: Deps) {
  const app = router();
  const ctx = async (c: Parameters<Parameters<typeof app.openapi>[1]>[0], payload: unknown) => ({
    principal: c.get("principal"),
    requestId: c.get("requestId"),
    idempotency: await idempotencyOf(c, payload),
  });

  app.openapi(
    createRoute({
      method: "post",
      path: "/vms",
      tags,
      security,
      summary: "Create and start a VM",
      request: body(CreateVm),
      responses: { 202: json(CreateVmResponse, "Accepted"), ...errors },
    }),
    async (c) => {
      const payload = c.req.valid("json");
      return send(await createVm(deps, await ctx(c, payload), payload)) as never;
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/vms",
      tags,
      security,
      summary: "List the project's VMs",
      request: {
        query: PageQuery.extend({
          state: VmState.optional(),
          clusterId: z.string().max(64).optional(),
          project: z.string().max(128).optional(),
        }),
      },
      responses: { 200: json(VmList, "VMs"), ...errors },
    }),
    async (c) => {
      const q = c.req.valid("query");
      actOn(c, q.project);
      return c.json(await listVms(deps, c.get("principal"), q, q), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/vms/{id}",
      tags,
      security,
      summary: "Get a VM",
      request: { params: IdParam },
      responses: { 200: json(Vm, "The VM"), ...errors },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      await actOnResource(c, () => getVmItem(deps, id));
      return c.json(await getVm(deps, c.get("principal"), id), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/vms/{id}/actions",
      tags,
      security,
      summary: "Request an action on a VM",
      request: { params: IdParam, ...body(VmActionRequest) },
      responses: { 202: json(OperationResponse, "Accepted"), ...errors },
    }),
    async (c) => {
      const payload = c.req.valid("json");
      const { id } = c.req.valid("param");
      c.set("action", `vm.${payload.action}`);
      await actOnResource(c, () => getVmItem(deps, id));
      return send(await requestAction(deps, await ctx(c, payload), id, payload)) as never;
    },
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/vms/{id}",
      tags,
      security,
      summary: "Destroy and unregister a VM",
      request: { params: IdParam },
      responses: { 202: json(OperationResponse, "Accepted"), ...errors },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      await actOnResource(c, () => getVmItem(deps, id));
      return send(await requestAction(deps, await ctx(c, null), id, { action: "delete" })) as never;
    },
  );

  return app;
}
