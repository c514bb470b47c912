/** Cloudflare Workers entry. Bindings (vars and secrets) carry the control-plane environment. */
import { parseControlPlaneEnv } from "../../shared/config/control-plane.ts";
import { createControlPlane } from "../../shared/services/control-plane.ts";
import siteConfig from "../../usher.config.ts";
import { createApp } from "./app.ts";

let app: Promise<ReturnType<typeof createApp>> | undefined;

export default {
  async fetch(request: Request, env: Record<string, unknown>): Promise<Response> {
    try {
      // Built once per isolate from the bindings; a bad configuration answers 500 with the reason logged.
      app ??= createControlPlane(parseControlPlaneEnv(env), { component: "api", config: siteConfig }).then(
        createApp,
      );
      return (await app).fetch(request);
    } catch (err) {
      app = undefined;
      console.error(JSON.stringify({ level: "error", msg: "api failed to start", err: String(err) }));
      return new Response(
        JSON.stringify({
          type: "about:blank",
          title: "Internal Server Error",
          status: 500,
          code: "internal",
        }),
        {
          status: 500,
          headers: { "content-type": "application/problem+json" },
        },
      );
    }
  },
};
