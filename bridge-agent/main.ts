/**
 * Entry point: `node bridge-agent/main.ts --config <path.json> [--check]`.
 * Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 1 when the agent cannot start (or, with
 * `--check`, when a host cannot be reached), 2 for bad usage or configuration (a plain message on stderr).
 */
import { parseArgs } from "node:util";
import { Agent } from "./agent.ts";
import { checkConfig, formatChecks, type HostCheck } from "./check.ts";
import { type AgentConfig, loadAgentConfig } from "./config.ts";

export async function main(argv: string[]): Promise<void> {
  let config: AgentConfig;
  let check = false;
  try {
    const { values } = parseArgs({
      args: argv,
      options: { config: { type: "string" }, check: { type: "boolean" } },
      strict: true,
    });
    if (!values.config) throw new Error("usage: usher-agent --config <path.json> [--check]");
    config = loadAgentConfig(values.config);
    check = values.check === true;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }

  if (check) {
    let checks: HostCheck[];
    try {
      checks = await checkConfig(config);
    } catch (err) {
      process.stderr.write(`configuration check failed: ${(err as Error).message}\n`);
      process.exit(2);
    }
    process.stdout.write(`${formatChecks(checks)}\n`);
    process.exit(checks.every((c) => c.ok) ? 0 : 1);
  }

  const agent = new Agent(config);
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`${signal} received, stopping\n`);
    agent.stop().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`stop failed: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  try {
    await agent.start();
  } catch (err) {
    process.stderr.write(`agent failed to start: ${(err as Error).message}\n`);
    await agent.stop().catch(() => {});
    process.exit(1);
  }
}

if (import.meta.main) await main(process.argv.slice(2));
