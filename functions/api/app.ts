/**
 * The HTTP API (Hono). Web-standard APIs only, so the same app runs on Node, Cloudflare Workers and
 * AWS Lambda; each runtime has a small entry file that builds the control plane and calls this.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import type { TokenVerifier } from "../../shared/auth/tokens.ts";
import { ErrorCode } from "../../shared/errors.ts";
import type { Deps } from "../../shared/services/context.ts";
import type { ApiEnv } from "./env.ts";
import { bearerAuth } from "./middleware/auth.ts";
import { requestPlugins } from "./middleware/plugins.ts";
import { requestId } from "./middleware/request-id.ts";
import { onError, problemResponse, validationHook } from "./problem.ts";
import { clusterRoutes } from "./routes/clusters.ts";
import { eventRoutes } from "./routes/events.ts";
import { hostRoutes } from "./routes/hosts.ts";
import { leaseRoutes } from "./routes/leases.ts";
import { operationRoutes } from "./routes/operations.ts";
import { quotaRoutes } from "./routes/quotas.ts";
import { schedulerRoutes } from "./routes/scheduler.ts";
import { vmRoutes } from "./routes/vms.ts";

export const API_VERSION = "0.1.0";

export function createApp(opts: {
  deps: Deps;
  verifyToken: TokenVerifier;
  /** Wait for `request` plugins before answering (Lambda freezes the process once it has answered). */
  awaitRequestPlugins?: boolean;
}) {
  const { deps } = opts;
  const app = new OpenAPIHono<ApiEnv>({ defaultHook: validationHook });
  app.onError(onError(deps.log));
  app.notFound((c) =>
    problemResponse(c, 404, ErrorCode.notFound, `no route for ${c.req.method} ${c.req.path}`),
  );
  app.use("*", requestId({ log: deps.log }));
  app.use("*", requestPlugins({ deps, awaitHooks: opts.awaitRequestPlugins }));
  app.use(
    "/v1/*",
    bodyLimit({
      maxSize: 256 * 1024,
      onError: (c) => problemResponse(c, 413, ErrorCode.validation, "request body is larger than 256 KiB"),
    }),
  );

  app.get("/v1/health", (c) => c.json({ status: "ok", version: API_VERSION }));
  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
  });
  app.doc31("/v1/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "Usher",
      version: API_VERSION,
      description: "Control plane for clusters of virtual machines.",
    },
    servers: [{ url: "/" }],
  });

  const auth = bearerAuth({ verify: opts.verifyToken });
  for (const path of [
    "/v1/vms",
    "/v1/vms/*",
    "/v1/clusters",
    "/v1/clusters/*",
    "/v1/operations",
    "/v1/operations/*",
    "/v1/hosts",
    "/v1/hosts/*",
    "/v1/quotas",
    "/v1/scheduler/*",
    "/v1/events",
  ]) {
    app.use(path, auth);
  }
  app.route("/v1", vmRoutes(deps));
  app.route("/v1", leaseRoutes(deps));
  app.route("/v1", clusterRoutes(deps));
  app.route("/v1", operationRoutes(deps));
  app.route("/v1", quotaRoutes(deps));
  app.route("/v1", hostRoutes(deps));
  app.route("/v1", schedulerRoutes(deps));
  app.route("/v1", eventRoutes(deps));
  return app;
}
