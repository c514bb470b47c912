/**
 * The consumers for the local stack: pollers that call the same handlers Lambda would, and the sweep
 * on a timer. `USHER_CONSUMERS` picks which run in this process (tests run several schedulers).
 */
import { z } from "zod";
import { parseControlPlaneEnv } from "../../shared/config/control-plane.ts";
import { loadSiteConfig } from "../../shared/config/site.ts";
import { deliverNotifications } from "../../shared/plugins/outbox.ts";
import { createControlPlane } from "../../shared/services/control-plane.ts";
import siteConfig from "../../usher.config.ts";
import { createResultsHandler, createSchedulerHandler, createSweepHandler } from "./handlers.ts";
import { QueuePoller } from "./poller.ts";

const LocalEnv = z.object({
  /** Which consumers this process runs, comma separated. */
  USHER_CONSUMERS: z
    .string()
    .default("scheduler,results,sweep,notifier")
    .transform((s) =>
      s
        .split(",")
        .map((x) => x.trim())
        .filter(Boolean),
    )
    .pipe(z.array(z.enum(["scheduler", "results", "sweep", "notifier"])).min(1)),
  /** Seconds between sweeps. */
  USHER_SWEEP_INTERVAL_SECONDS: z.coerce.number().min(0.1).default(5),
  /** Milliseconds between passes of the notification outbox when it had nothing due. */
  USHER_NOTIFY_INTERVAL_MS: z.coerce.number().int().min(50).default(500),
  /** Another site config file instead of usher.config.ts (tests, local experiments). */
  USHER_CONFIG: z.string().optional(),
  /** Pollers per queue: Lambda would run several invocations at once. */
  USHER_POLLERS_PER_QUEUE: z.coerce.number().int().min(1).max(16).default(2),
});

async function main() {
  let env: ReturnType<typeof parseControlPlaneEnv>;
  let local: z.infer<typeof LocalEnv>;
  try {
    env = parseControlPlaneEnv(process.env);
    local = LocalEnv.parse(process.env);
  } catch (err) {
    console.error((err as Error).message);
    process.exit(2);
  }
  const { deps } = await createControlPlane(env, {
    component: `consumers:${local.USHER_CONSUMERS.join("+")}`,
    config: await loadSiteConfig(local.USHER_CONFIG, siteConfig),
  });
  const pollers: QueuePoller[] = [];
  const add = (queueUrl: string, handler: ReturnType<typeof createSchedulerHandler>) => {
    for (let i = 0; i < local.USHER_POLLERS_PER_QUEUE; i++) {
      pollers.push(
        new QueuePoller({ sqs: deps.queues.sqs, queueUrl, handler, log: deps.log, region: env.AWS_REGION }),
      );
    }
  };
  if (local.USHER_CONSUMERS.includes("scheduler")) add(env.USHER_OPS_QUEUE_URL, createSchedulerHandler(deps));
  if (local.USHER_CONSUMERS.includes("results")) add(env.USHER_RESULTS_QUEUE_URL, createResultsHandler(deps));
  for (const p of pollers) p.start();

  let timer: ReturnType<typeof setTimeout> | undefined;
  let notifyTimer: ReturnType<typeof setTimeout> | undefined;
  let stopping = false;
  if (local.USHER_CONSUMERS.includes("notifier")) {
    // The outbox of plugin notifications: straight on while there is work, else every interval.
    const pass = async () => {
      let busy = false;
      try {
        const r = await deliverNotifications(deps);
        busy = r.due > 0;
      } catch (err) {
        deps.log.error("notification delivery failed", { err });
      }
      if (!stopping) notifyTimer = setTimeout(pass, busy ? 0 : local.USHER_NOTIFY_INTERVAL_MS);
    };
    notifyTimer = setTimeout(pass, 0);
  }
  if (local.USHER_CONSUMERS.includes("sweep")) {
    const sweepOnce = createSweepHandler(deps);
    const tick = async () => {
      try {
        await sweepOnce();
      } catch (err) {
        deps.log.error("sweep failed", { err });
      }
      if (!stopping) timer = setTimeout(tick, local.USHER_SWEEP_INTERVAL_SECONDS * 1000);
    };
    timer = setTimeout(tick, 0);
  }
  deps.log.info("consumers running", { consumers: local.USHER_CONSUMERS });
  const stop = async () => {
    stopping = true;
    clearTimeout(timer);
    clearTimeout(notifyTimer);
    await Promise.all(pollers.map((p) => p.stop()));
    process.exit(0);
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

await main();
