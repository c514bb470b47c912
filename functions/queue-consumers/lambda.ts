/** AWS Lambda entries for the consumers: one function per queue, and the scheduled sweep. */
import type { SQSEvent } from "aws-lambda";
import { parseControlPlaneEnv } from "../../shared/config/control-plane.ts";
import { createControlPlane } from "../../shared/services/control-plane.ts";
import siteConfig from "../../usher.config.ts";
import {
  createNotifierHandler,
  createResultsHandler,
  createSchedulerHandler,
  createSweepHandler,
} from "./handlers.ts";

let cp: ReturnType<typeof createControlPlane> | undefined;
const deps = async () => {
  cp ??= createControlPlane(parseControlPlaneEnv(process.env), {
    component: "consumers",
    config: siteConfig,
  });
  return (await cp).deps;
};

export const scheduler = async (event: SQSEvent) => createSchedulerHandler(await deps())(event);
export const results = async (event: SQSEvent) => createResultsHandler(await deps())(event);
export const sweeper = async () => createSweepHandler(await deps())();
export const notifier = async () => createNotifierHandler(await deps())();
