import { createRoute } from "@hono/zod-openapi";
import {
  ClusterActionRequest,
  ClusterActionResponse,
  ClusterDetail,
  ClusterList,
  CreateCluster,
  CreateClusterResponse,
} from "../../../shared/contracts/cluster.ts";
import { clusterAction, createCluster, getCluster, listClusters } from "../../../shared/services/clusters.ts";
import type { Deps } from "../../../shared/services/context.ts";
import { getItem } from "../../../shared/store/base.ts";
import type { ClusterItem } from "../../../shared/store/items.ts";
import { keys } from "../../../shared/store/keys.ts";
import { idempotencyOf } from "../middleware/idempotency.ts";
import { actOnResource, body, errors, IdParam, json, PageQuery, router, security, send } from "./common.ts";

const tags = ["Clusters"];

export function clusterRoutes(deps: Deps) {
  const app = router();
  // Only to name an admin's target project; the service still does its own (visibility-checked) read.
  const clusterItem = (id: string) => () => getItem<ClusterItem>(deps.db, keys.cluster(id));
  app.openapi(
    createRoute({
      method: "post",
      path: "/clusters",
      tags,
      security,
      summary: "Start a virtual cluster",
      request: body(CreateCluster),
      responses: { 202: json(CreateClusterResponse, "Accepted"), ...errors },
    }),
    async (c) => {
      const payload = c.req.valid("json");
      const ctx = {
        principal: c.get("principal"),
        requestId: c.get("requestId"),
        idempotency: await idempotencyOf(c, payload),
      };
      return send(await createCluster(deps, ctx, payload)) as never;
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/clusters",
      tags,
      security,
      summary: "List the project's clusters",
      request: { query: PageQuery },
      responses: { 200: json(ClusterList, "Clusters"), ...errors },
    }),
    async (c) => c.json(await listClusters(deps, c.get("principal"), c.req.valid("query")), 200),
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/clusters/{id}",
      tags,
      security,
      summary: "Get a cluster and its VMs",
      request: { params: IdParam },
      responses: { 200: json(ClusterDetail, "The cluster"), ...errors },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      await actOnResource(c, clusterItem(id));
      return c.json(await getCluster(deps, c.get("principal"), id), 200);
    },
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/clusters/{id}/actions",
      tags,
      security,
      summary: "One action on every VM of a cluster",
      request: { params: IdParam, ...body(ClusterActionRequest) },
      responses: { 202: json(ClusterActionResponse, "Accepted"), ...errors },
    }),
    async (c) => {
      const payload = c.req.valid("json");
      const { id } = c.req.valid("param");
      c.set("action", `cluster.${payload.action}`);
      await actOnResource(c, clusterItem(id));
      const ctx = {
        principal: c.get("principal"),
        requestId: c.get("requestId"),
        idempotency: await idempotencyOf(c, payload),
      };
      return send(await clusterAction(deps, ctx, id, payload)) as never;
    },
  );
  return app;
}
