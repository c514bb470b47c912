import { createRoute } from "@hono/zod-openapi";
import { Quota, QuotaQuery } from "../../../shared/contracts/quota.ts";
import type { Deps } from "../../../shared/services/context.ts";
import { getQuota } from "../../../shared/services/quotas.ts";
import { actOn, errors, json, router, security } from "./common.ts";

/** A project's quota (the quotas plugin); 404 when the site runs none. */
export function quotaRoutes(deps: Deps) {
  const app = router();
  app.openapi(
    createRoute({
      method: "get",
      path: "/quotas",
      tags: ["Quotas"],
      security,
      summary: "A project's quota limits and usage (own project; admins any)",
      request: { query: QuotaQuery },
      responses: { 200: json(Quota, "The quota"), ...errors },
    }),
    async (c) => {
      c.set("action", "quota.get");
      const { project } = c.req.valid("query");
      actOn(c, project);
      return c.json(await getQuota(deps, c.get("principal"), project), 200);
    },
  );
  return app;
}
