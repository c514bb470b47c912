import { createRoute } from "@hono/zod-openapi";
import { isOperator } from "../../../shared/auth/principal.ts";
import { DryRunRequest, DryRunResponse } from "../../../shared/contracts/scheduler.ts";
import { ErrorCode, UsherError } from "../../../shared/errors.ts";
import type { Deps } from "../../../shared/services/context.ts";
import { schedulerDryRun } from "../../../shared/services/dry-run.ts";
import { body, errors, json, router, security } from "./common.ts";

const tags = ["Scheduler"];

/** The scheduler, for operators and admins: where a VM or cluster would go now, and why. */
export function schedulerRoutes(deps: Deps) {
  const app = router();
  app.openapi(
    createRoute({
      method: "post",
      path: "/scheduler/dry-run",
      tags,
      security,
      summary:
        "Show where a VM or a cluster would be placed, with every candidate's scores, claiming nothing",
      request: body(DryRunRequest),
      responses: { 200: json(DryRunResponse, "The decision the scheduler would make"), ...errors },
    }),
    async (c) => {
      if (!isOperator(c.get("principal")))
        throw new UsherError(ErrorCode.forbidden, "the scheduler's dry run needs the operator or admin role");
      c.set("action", "scheduler.dry-run");
      return c.json(await schedulerDryRun(deps, c.get("principal"), c.req.valid("json")), 200);
    },
  );
  return app;
}
