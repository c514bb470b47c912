import { createRoute } from "@hono/zod-openapi";
import { EventFilter, EventList } from "../../../shared/contracts/events.ts";
import type { Deps } from "../../../shared/services/context.ts";
import { listEvents } from "../../../shared/services/event-log.ts";
import { actOn, errors, json, PageQuery, router, security } from "./common.ts";

const tags = ["Events"];

export function eventRoutes(deps: Deps) {
  const app = router();
  app.openapi(
    createRoute({
      method: "get",
      path: "/events",
      tags,
      security,
      summary:
        "The project's event log, newest first: changes, operations, and (with the audit plugin) requests",
      request: { query: PageQuery.extend(EventFilter.shape) },
      responses: { 200: json(EventList, "Events"), ...errors },
    }),
    async (c) => {
      const { limit, cursor, ...filter } = c.req.valid("query");
      actOn(c, filter.project);
      return c.json(await listEvents(deps, c.get("principal"), filter, { limit, cursor }), 200);
    },
  );
  return app;
}
