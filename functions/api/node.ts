/** Runs the API on Node (the local stack). `PORT`/`HOST` plus the control-plane environment. */
import { serve } from "@hono/node-server";
import { z } from "zod";
import { parseControlPlaneEnv } from "../../shared/config/control-plane.ts";
import { loadSiteConfig } from "../../shared/config/site.ts";
import { createControlPlane } from "../../shared/services/control-plane.ts";
import siteConfig from "../../usher.config.ts";
import { createApp } from "./app.ts";

const Listen = z.object({
  /** TCP port to listen on. */
  PORT: z.coerce.number().int().min(0).max(65535).default(8787),
  /** Address to bind: loopback unless told otherwise. */
  HOST: z.string().default("127.0.0.1"),
  /** Another site config file instead of usher.config.ts (tests, local experiments). */
  USHER_CONFIG: z.string().optional(),
});

async function main() {
  let env: ReturnType<typeof parseControlPlaneEnv>;
  let listen: z.infer<typeof Listen>;
  try {
    env = parseControlPlaneEnv(process.env);
    listen = Listen.parse(process.env);
  } catch (err) {
    console.error((err as Error).message);
    process.exit(2);
  }
  const config = await loadSiteConfig(listen.USHER_CONFIG, siteConfig);
  const cp = await createControlPlane(env, { component: "api", config });
  const app = createApp(cp);
  const server = serve({ fetch: app.fetch, port: listen.PORT, hostname: listen.HOST }, (info) => {
    cp.deps.log.info("api listening", { url: `http://${listen.HOST}:${info.port}` });
  });
  const stop = () => server.close(() => process.exit(0));
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

await main();
