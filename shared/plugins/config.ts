/**
 * The typed site configuration (`usher.config.ts` at the repository root): which plugins run, in
 * which order, with which options, and the scheduler's policy choices. Checked once, when the
 * control plane is built; a bad config stops start-up with every problem named.
 */
import type { Policy } from "../scheduler/policy.ts";
import { checkScheduler } from "../scheduler/site-policies.ts";
import type { Hooks, Plugin } from "./types.ts";

export type SchedulerConfig = {
  /** The policy for projects and clusters that name none (a built-in name or one of `policies`). */
  defaultPolicy?: string | undefined;
  /** Policy by project. A cluster's own policy (set at creation) wins over its project's. */
  projects?: Record<string, string> | undefined;
  /** Site-defined policies, by name, beside the built-ins (may name plugins' filters and weighers). */
  policies?: Record<string, Policy> | undefined;
};

export type NotificationConfig = {
  /** Deliveries of one notification to one plugin before it is given up (and logged as lost). */
  maxAttempts?: number | undefined;
  /** First retry after this long; each retry doubles it, up to `maxDelaySeconds`. */
  retryDelaySeconds?: number | undefined;
  maxDelaySeconds?: number | undefined;
};

export type UsherConfig = {
  /** Run in this order for every event they handle. */
  plugins: Plugin[];
  scheduler?: SchedulerConfig | undefined;
  notifications?: NotificationConfig | undefined;
};

export const DEFAULT_NOTIFICATIONS = {
  maxAttempts: 8,
  retryDelaySeconds: 2,
  maxDelaySeconds: 300,
} as const satisfies Required<NotificationConfig>;

export const DEFAULT_TIMEOUT_MS = 2000;

/**
 * Registers a plugin for some of its events only, as Usher's config registered plugins per event:
 * `on(["start", "vm_released"], dns())`. Its other hooks are left out (its placement stages stay).
 * Naming an event the plugin has no hook for is a mistake, refused at start-up; `timeoutMs`
 * overrides the plugin's own limit for this registration.
 */
export function on(
  events: readonly (keyof Hooks)[],
  plugin: Plugin,
  options: { timeoutMs?: number } = {},
): Plugin {
  const missing = events.filter((e) => !Object.hasOwn(plugin.hooks, e));
  if (missing.length)
    throw new Error(`usher.config: plugin ${plugin.name} has no hook for ${missing.join(", ")}`);
  if (!events.length) throw new Error(`usher.config: plugin ${plugin.name} registered for no event`);
  const hooks = Object.fromEntries(events.map((e) => [e, plugin.hooks[e]])) as Hooks;
  const registered = {
    ...plugin,
    hooks,
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
  };
  origins.set(registered, originOf(plugin));
  return registered;
}

const origins = new WeakMap<Plugin, Plugin>();

/**
 * The plugin object its factory made, for a registration `on()` made of it: plugins that keep state
 * by their own object (the quotas and leases APIs find their options so) look it up through this.
 */
export function originOf(plugin: Plugin): Plugin {
  return origins.get(plugin) ?? plugin;
}

/** Checks a config and returns it; use as `export default defineConfig({...})`. */
export function defineConfig(config: UsherConfig): UsherConfig {
  const problems = checkConfig(config);
  if (problems.length) throw new Error(`usher.config: ${problems.join("; ")}`);
  return config;
}

export function checkConfig(config: UsherConfig): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const p of config.plugins) {
    if (!/^[a-z][a-z0-9_-]{0,39}$/.test(p.name))
      problems.push(`plugin name ${JSON.stringify(p.name)} is not a short lower-case name`);
    if (seen.has(p.name)) problems.push(`plugin ${p.name} is listed twice`);
    seen.add(p.name);
    if (p.timeoutMs !== undefined && !(p.timeoutMs > 0 && p.timeoutMs <= 60_000))
      problems.push(`plugin ${p.name}: timeoutMs must be in (0, 60000]`);
  }
  const n = config.notifications;
  if (n?.maxAttempts !== undefined && !(Number.isInteger(n.maxAttempts) && n.maxAttempts >= 1))
    problems.push("notifications.maxAttempts must be a whole number ≥ 1");
  // A delay that is not a positive number would make the outbox's next due time invalid (NaN) or
  // retry at once, in a loop.
  for (const key of ["retryDelaySeconds", "maxDelaySeconds"] as const) {
    const v = n?.[key];
    if (v !== undefined && !(Number.isFinite(v) && v > 0))
      problems.push(`notifications.${key} must be a number of seconds > 0`);
  }
  // Policies and plugins' placement stages: an unknown name stops start-up, not the first placement.
  problems.push(...checkScheduler(config));
  return problems;
}
