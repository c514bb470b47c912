/**
 * `npm start`: the whole control plane on this machine, with one site of simulated hosts.
 * Prints the API URL, a dev token and a curl line; writes them to `.usher/local.env`.
 * Ctrl-C (SIGINT) or SIGTERM stops every child and exits 0.
 */
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { z } from "zod";
import { type Stack, type StackSite, startStack } from "./stack.ts";

const ROOT = resolve(import.meta.dirname, "../..");

const flag = z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1");

const Env = z.object({
  /** Port of the API on 127.0.0.1. */
  USHER_API_PORT: z.coerce.number().int().min(1).max(65_535).default(8787),
  /** Ports of DynamoDB Local and fauxqs; free ones when absent. */
  USHER_DYNAMODB_PORT: z.coerce.number().int().min(1).max(65_535).optional(),
  USHER_SQS_PORT: z.coerce.number().int().min(1).max(65_535).optional(),
  /** Where keys, agent configs, simulated host state and DynamoDB data live. */
  USHER_DATA_DIR: z.string().min(1).default(join(ROOT, ".usher")),
  /** Keep DynamoDB data across restarts (queues are in memory either way). */
  USHER_PERSIST: flag.default(true),
  /** Processes running the scheduler consumer. */
  USHER_SCHEDULER_PROCESSES: z.coerce.number().int().min(1).max(16).default(1),
  /** Multiplies the simulated hypervisor's delays (1 = realistic). */
  USHER_DELAY_SCALE: z.coerce.number().min(0).max(100).default(1),
  /** How often the sweep runs. */
  USHER_SWEEP_INTERVAL_SECONDS: z.coerce.number().int().min(1).default(5),
  /** Lifetime of the printed dev token. */
  USHER_DEV_TOKEN_EXPIRES_IN: z.string().default("30d"),
});

/** One site, three simulated hosts. */
const SITES: StackSite[] = [
  {
    name: "local",
    hosts: [
      { id: "sim-1", vcpus: 16, memoryMiB: 64 * 1024 },
      { id: "sim-2", vcpus: 16, memoryMiB: 64 * 1024 },
      { id: "sim-3", vcpus: 32, memoryMiB: 128 * 1024 },
    ],
  },
];

async function main(): Promise<void> {
  const config = Env.parse(process.env);
  let stack: Stack | undefined;
  let stopping = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) {
      if (!stack) {
        // Second signal while still starting: exit now; the exit hook SIGKILLs the children started so far.
        process.stdout.write(`${signal} again: killing the children started so far\n`);
        process.exit(130);
      }
      return;
    }
    stopping = true;
    if (!stack) {
      process.stdout.write(`\n${signal}: will stop once start-up finishes (again to kill now)\n`);
      return;
    }
    process.stdout.write(`\n${signal}: stopping the local stack...\n`);
    stack.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);

  stack = await startStack({
    dataDir: config.USHER_DATA_DIR,
    apiPort: config.USHER_API_PORT,
    dynamodbPort: config.USHER_DYNAMODB_PORT,
    sqsPort: config.USHER_SQS_PORT,
    persist: config.USHER_PERSIST,
    schedulerProcesses: config.USHER_SCHEDULER_PROCESSES,
    delayScale: config.USHER_DELAY_SCALE,
    sweepIntervalSeconds: config.USHER_SWEEP_INTERVAL_SECONDS,
    sites: SITES,
  });
  if (stopping) {
    // A signal arrived while starting: stop now that there is something to stop.
    await stack.stop();
    process.exit(0);
  }

  const token = await stack.mintToken({
    sub: "dev",
    project: "dev",
    roles: ["admin"],
    expiresIn: config.USHER_DEV_TOKEN_EXPIRES_IN,
  });
  const envFile = join(config.USHER_DATA_DIR, "local.env");
  await writeFile(envFile, `USHER_URL=${stack.apiUrl}\nUSHER_TOKEN=${token}\n`, { mode: 0o600 });
  const body = '{"name":"web-1","vcpus":1,"memoryMiB":512}';
  process.stdout.write(
    [
      "",
      `Usher is up: ${stack.apiUrl}`,
      `Dev token (admin, project dev) and URL are in ${envFile}:`,
      `  export USHER_URL=${stack.apiUrl}`,
      `  export USHER_TOKEN=${token}`,
      "Create a VM:",
      `  curl -sS -X POST $USHER_URL/v1/vms -H "authorization: Bearer $USHER_TOKEN" -H 'content-type: application/json' -d '${body}'`,
      "Ctrl-C stops everything.",
      "",
    ].join("\n"),
  );
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
