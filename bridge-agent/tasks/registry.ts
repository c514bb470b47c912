/**
 * Which code runs each task: a typed map, never a name looked up from a string the compiler cannot
 * follow. Agent-side plugins are listed in AGENT_PLUGINS and reached by `plugin` tasks.
 */
import type { AgentTask } from "../../shared/contracts/index.ts";
import { dnsPlugin } from "../plugins/dns/plugin.ts";
import { fence } from "./fence.ts";
import { purge } from "./purge.ts";
import type { AgentPlugin, TaskHandler } from "./types.ts";

export const AGENT_PLUGINS: Readonly<Record<string, AgentPlugin>> = { dns: dnsPlugin };

const runPlugin: TaskHandler = async (task, ctx) => {
  const plugin =
    task.plugin && Object.hasOwn(AGENT_PLUGINS, task.plugin) ? AGENT_PLUGINS[task.plugin] : undefined;
  if (!plugin)
    throw Object.assign(new Error(`no agent plugin named ${task.plugin ?? "(none)"}`), {
      code: "plugin_unknown",
    });
  return plugin.run(task, ctx);
};

export const TASK_HANDLERS: Readonly<Record<AgentTask["kind"], TaskHandler>> = {
  plugin: runPlugin,
  fence,
  purge,
};
