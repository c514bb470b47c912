/**
 * A site's policies: the built-ins, those its config defines (which may name plugins' filters and
 * weighers), and which one applies to a cluster or a project. Checked once at start-up
 * (`checkScheduler`, run by `checkConfig`), then built once per config and reused by every decision.
 */
import type { SchedulerConfig, UsherConfig } from "../plugins/config.ts";
import { ALL_FILTERS, DEFAULT_POLICY, POLICIES, type Policy } from "./policy.ts";
import { type Registry, registryOf } from "./registry.ts";

/** Policy names: short and lower-case, like the built-ins' (`power-saving`). */
export const POLICY_NAME = /^[a-z][a-z0-9_-]{0,39}$/;

export class SitePolicies {
  /** The built-in stages and the plugins'. */
  readonly registry: Registry;
  /** Every policy by name: the built-ins, then the site's. */
  readonly policies: ReadonlyMap<string, Policy>;
  private readonly scheduler: SchedulerConfig;

  /** Throws, naming every problem, on a config `checkScheduler` refuses. */
  constructor(config: UsherConfig) {
    const problems = checkScheduler(config);
    if (problems.length) throw new Error(`usher.config: ${problems.join("; ")}`);
    this.registry = registryOf(config.plugins).registry;
    this.scheduler = config.scheduler ?? {};
    this.policies = new Map<string, Policy>([
      ...Object.entries(POLICIES),
      ...Object.entries(this.scheduler.policies ?? {}),
    ]);
  }

  has(name: string): boolean {
    return this.policies.has(name);
  }

  /**
   * The cluster's own policy, else its project's, else the site's default, else `pack`. A cluster's
   * policy that the config no longer defines is passed over (the others were checked at start-up).
   */
  choose(choice: { cluster?: string | undefined; project: string }): { name: string; policy: Policy } {
    for (const name of [
      choice.cluster,
      this.scheduler.projects?.[choice.project],
      this.scheduler.defaultPolicy,
      DEFAULT_POLICY,
    ]) {
      const policy = name === undefined ? undefined : this.policies.get(name);
      if (name !== undefined && policy) return { name, policy };
    }
    return { name: DEFAULT_POLICY, policy: POLICIES[DEFAULT_POLICY] };
  }
}

const built = new WeakMap<UsherConfig, SitePolicies>();

/** The site policies of a config, built on first use. */
export function sitePolicies(config: UsherConfig): SitePolicies {
  let s = built.get(config);
  if (!s) {
    s = new SitePolicies(config);
    built.set(config, s);
  }
  return s;
}

/**
 * Every problem with a config's scheduler section and plugins' placement stages. Site policies must
 * keep every built-in filter (in any order, plugins' filters added anywhere): the capacity filters
 * keep a decision from choosing a host its claim would then refuse, and the others are constraints a
 * user asked for, which a policy must not drop without a word.
 */
export function checkScheduler(config: UsherConfig): string[] {
  const { registry, problems } = registryOf(config.plugins);
  const s = config.scheduler ?? {};
  const site = Object.entries(s.policies ?? {});
  for (const [name, policy] of site) {
    const at = `scheduler policy ${JSON.stringify(name)}`;
    if (!POLICY_NAME.test(name)) problems.push(`${at}: the name is not a short lower-case name`);
    if (Object.hasOwn(POLICIES, name)) problems.push(`${at}: a built-in policy has this name`);
    if (!Array.isArray(policy?.filters) || !Array.isArray(policy?.weighers)) {
      problems.push(`${at}: needs a filters list and a weighers list`);
      continue;
    }
    for (const f of policy.filters)
      if (!Object.hasOwn(registry.filters, f)) problems.push(`${at}: unknown filter ${JSON.stringify(f)}`);
    if (new Set(policy.filters).size !== policy.filters.length)
      problems.push(`${at}: a filter is listed twice`);
    const missing = ALL_FILTERS.filter((f) => !policy.filters.includes(f));
    if (missing.length) problems.push(`${at}: lacks the built-in filters ${missing.join(", ")}`);
    for (const w of policy.weighers) {
      if (!Object.hasOwn(registry.weighers, w?.name))
        problems.push(`${at}: unknown weigher ${JSON.stringify(w?.name)}`);
      else if (!Number.isFinite(w.weight)) problems.push(`${at}: weigher ${w.name} needs a finite weight`);
    }
  }
  const known = (name: string) => Object.hasOwn(POLICIES, name) || site.some(([n]) => n === name);
  if (s.defaultPolicy !== undefined && !known(s.defaultPolicy))
    problems.push(`scheduler.defaultPolicy: unknown policy ${JSON.stringify(s.defaultPolicy)}`);
  for (const [project, name] of Object.entries(s.projects ?? {}))
    if (!known(name)) problems.push(`scheduler.projects.${project}: unknown policy ${JSON.stringify(name)}`);
  return problems;
}
