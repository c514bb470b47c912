/**
 * Runs the fauxqs SQS emulator on 127.0.0.1, as a child process of the local stack.
 *
 * Not fauxqs's own CLI (`dist/cli.js`): that one takes only a port (FAUXQS_PORT; its FAUXQS_HOST is
 * the host written into queue URLs, not a bind address), always listens on 0.0.0.0 and logs every
 * request. fauxqs's `buildApp()` gives the same server, which we bind to loopback ourselves.
 * State is in memory only (fauxqs's SQLite persistence is wired up only inside `startFauxqs()`, which
 * binds 0.0.0.0): after a restart the queues are recreated empty, and the control plane's sweep
 * re-sends queued operations.
 *
 * Prints one JSON line `{"msg":"fauxqs listening","port":N,...}` once it accepts connections.
 */
import { type BuildAppOptions, buildApp } from "fauxqs";
import { z } from "zod";

const Env = z.object({
  /** Port to listen on; 0 picks a free one (reported in the "listening" line). */
  FAUXQS_PORT: z.coerce.number().int().min(0).max(65_535).default(0),
  /** Address to listen on. */
  FAUXQS_BIND: z.string().default("127.0.0.1"),
});

/**
 * fauxqs names queues `http://sqs.<region>.localhost:<port>/...` by default, a host name that does not
 * resolve on these machines. With its SQS store's `host` unset it uses the request's Host header
 * instead, giving `http://127.0.0.1:<port>/...`. The store class is not exported from the package
 * root, so it is loaded by file (fauxqs is pinned to an exact version in package.json).
 */
async function loopbackUrlStores(): Promise<BuildAppOptions["stores"]> {
  const file = new URL("./sqs/sqsStore.js", import.meta.resolve("fauxqs"));
  const { SqsStore } = (await import(file.href)) as { SqsStore: new () => { host: string } };
  const sqsStore = new SqsStore();
  sqsStore.host = "";
  // buildApp creates the SNS and S3 stores itself when they are absent.
  return { sqsStore } as unknown as BuildAppOptions["stores"];
}

async function main(): Promise<void> {
  const env = Env.parse(process.env);
  const app = buildApp({ logger: false, stores: await loopbackUrlStores() });
  const address = await app.listen({ port: env.FAUXQS_PORT, host: env.FAUXQS_BIND });
  const port = Number(new URL(address).port);
  const log = (msg: string, fields: Record<string, unknown> = {}) =>
    console.log(
      JSON.stringify({ ts: new Date().toISOString(), level: "info", msg, component: "fauxqs", ...fields }),
    );
  log("fauxqs listening", { address, port });
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    log("fauxqs stopping", { signal });
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

main().catch((error: unknown) => {
  console.error(
    JSON.stringify({
      level: "error",
      msg: "fauxqs failed to start",
      component: "fauxqs",
      error: String(error),
    }),
  );
  process.exit(1);
});
