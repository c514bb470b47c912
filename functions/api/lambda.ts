/** AWS Lambda entry (API Gateway / function URL). Configuration comes from the function's environment. */
import { handle } from "hono/aws-lambda";
import { parseControlPlaneEnv } from "../../shared/config/control-plane.ts";
import { createControlPlane } from "../../shared/services/control-plane.ts";
import siteConfig from "../../usher.config.ts";
import { createApp } from "./app.ts";

let app: Promise<ReturnType<typeof createApp>> | undefined;

/** Built on the first invocation of each execution environment, then reused. */
export const handler: ReturnType<typeof handle> = async (event, context) => {
  app ??= createControlPlane(parseControlPlaneEnv(process.env), {
    component: "api",
    config: siteConfig,
  }).then((cp) => createApp({ ...cp, awaitRequestPlugins: true }));
  return handle(await app)(event, context);
};
