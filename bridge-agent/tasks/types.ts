/** Agent tasks: work sent by the control plane that is not a VM operation. */
import type { AgentTask } from "../../shared/contracts/index.ts";
import type { Logger } from "../../shared/log.ts";
import type { AgentConfig } from "../config.ts";
import type { HypervisorDriver } from "../drivers/driver.ts";

export type TaskContext = {
  config: AgentConfig;
  /** The drivers of this agent's hosts, by host id. */
  drivers: ReadonlyMap<string, HypervisorDriver>;
  log: Logger;
  /** Aborted when the agent stops. */
  signal: AbortSignal;
};

/**
 * Runs one task. Resolves with what to report (`data`); throws to fail it: the message is left on
 * the queue for another delivery until `taskMaxAttempts`, then a failed result is reported.
 * Must be safe to run again for the same task (a redelivery after a crash).
 */
export type TaskHandler = (task: AgentTask, ctx: TaskContext) => Promise<Record<string, unknown> | undefined>;

/** A plugin that runs in the agent, reached by `plugin` tasks naming it. */
export type AgentPlugin = {
  name: string;
  run: TaskHandler;
};
