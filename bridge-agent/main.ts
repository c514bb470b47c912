/**
 * Entry point: `node bridge-agent/main.ts --config <path.json>`.
 * Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 1 when the agent cannot start, 2 for bad
 * usage or configuration (a plain message on stderr).
 */
import { parseArgs } from "node:util";
import { Agent } from "./agent.ts";
import { type AgentConfig, loadAgentConfig } from "./config.ts";

export async function main(argv: string[]): Promise<void> {
  let config: AgentConfig;
  try {
    const { values } = parseArgs({ args: argv, options: { config: { type: "string" } }, strict: true });
    if (!values.config) throw new Error("usage: node bridge-agent/main.ts --config <path.json>");
    config = loadAgentConfig(values.config);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
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
