/** Runs the API on Node (the local stack). `PORT`/`HOST` plus the control-plane environment. */
import { serve } from "@hono/node-server";
import { z } from "zod";
import { parseControlPlaneEnv } from "../../shared/config/control-plane.ts";
import { createControlPlane } from "../../shared/services/control-plane.ts";
import { createApp } from "./app.ts";

const Listen = z.object({
  /** TCP port to listen on. */
  PORT: z.coerce.number().int().min(0).max(65535).default(8787),
  /** Address to bind: loopback unless told otherwise. */
  HOST: z.string().default("127.0.0.1"),
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
  const cp = await createControlPlane(env, { component: "api" });
  const app = createApp(cp);
  const server = serve({ fetch: app.fetch, port: listen.PORT, hostname: listen.HOST }, (info) => {
    cp.deps.log.info("api listening", { url: `http://${listen.HOST}:${info.port}` });
  });
  const stop = () => server.close(() => process.exit(0));
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

await main();
