/**
 * Argument policy (Usher's kwargfil): defaults, limits and allowed values for what callers ask of
 * VMs, per project and role. It runs on `start_request` (a new VM, `req.create` set, or starting an
 * existing one) and `migrate_request`; a violation vetoes the request (403 `vetoed`, the reason, and
 * `details: { plugin, field, requested, limit | allowed }`).
 *
 * What is checked when:
 * - creating a VM (single or cluster member): `defaults` fill unset spec fields, then the spec
 *   (`limits`, `allowed.images`, `allowed.hypervisors`) and the site (`allowed.sites`) are checked;
 * - every start and migration: an explicit `targetHostId` against `allowed.hosts`; and the hosts the
 *   scheduler may choose from are narrowed to `allowed.hosts` too (recorded as the operation's
 *   `allowedHosts` argument, which placement honours and names when nothing fits).
 * The spec of an existing VM is not re-checked on start: it was accepted when the VM was created and
 * no API can change it, so refusing would strand the VM.
 *
 * How several matching rules combine — per field, the most specific rule wins:
 * a rule naming projects and roles (3) beats one naming projects (2), which beats one naming roles
 * (1), which beats a rule without a scope (0, the default). Each field (`limits.vcpus`,
 * `limits.devices.<model>`, `allowed.images`, `defaults.image`, …) is taken from the most specific
 * matching rule that sets it, so a project's rule overrides only what it names and inherits the rest.
 * Rules of equal specificity that all match (a caller holding two roles with a rule each) combine
 * to the most permissive: the highest limit, the union of allowed values; for defaults the first in
 * config order.
 *
 * An unset hypervisor means "any kind", so with `allowed.hypervisors` set it is refused unless a
 * default names one. Likewise an unset image (a diskless VM) with `allowed.images` set.
 */
import type { HypervisorKind, Role } from "../../contracts/common.ts";
import type { VmSpec } from "../../contracts/vm.ts";
import type { ActionRequest, Plugin, Verdict } from "../types.ts";

/** Whom a rule applies to: callers in one of `projects` and holding one of `roles` (each when given). */
export type ArgumentScope = { projects?: readonly string[]; roles?: readonly Role[] };

export type ArgumentRule = {
  /** Absent: every caller (a default rule). */
  scope?: ArgumentScope;
  /** Filled into a new VM's spec where the caller left them unset. */
  defaults?: { image?: string; hypervisor?: HypervisorKind };
  /** Maxima for a new VM. Device models not named are not limited; 0 forbids a model. */
  limits?: { vcpus?: number; memoryMiB?: number; devices?: Record<string, number> };
  /** Allowed values; a list not set allows anything. */
  allowed?: {
    images?: readonly string[];
    hypervisors?: readonly HypervisorKind[];
    /** The hosts a start or migration may go to: an explicit `targetHostId`, and the scheduler's choice. */
    hosts?: readonly string[];
    /** The site a new VM is created in. */
    sites?: readonly string[];
  };
};

export type ArgumentPolicyOptions = {
  /** Unique per config; defaults to `arguments`. */
  name?: string;
  rules: readonly ArgumentRule[];
};

/** The policy that applies to one caller, field by field, after combining the matching rules. */
export type EffectivePolicy = {
  defaults: { image?: string; hypervisor?: HypervisorKind };
  limits: { vcpus?: number; memoryMiB?: number; devices: Record<string, number> };
  allowed: {
    images?: readonly string[];
    hypervisors?: readonly HypervisorKind[];
    hosts?: readonly string[];
    sites?: readonly string[];
  };
};

export type Violation = {
  field: string;
  reason: string;
  requested: unknown;
  limit?: number;
  allowed?: readonly string[];
};

/** How specific a rule is for this caller (higher wins), or undefined when it does not apply. */
export function specificity(
  scope: ArgumentScope | undefined,
  who: { project: string; roles: readonly Role[] },
): number | undefined {
  if (scope?.projects && !scope.projects.includes(who.project)) return undefined;
  if (scope?.roles && !scope.roles.some((r) => who.roles.includes(r))) return undefined;
  return (scope?.projects ? 2 : 0) + (scope?.roles ? 1 : 0);
}

type Ranked = { rule: ArgumentRule; level: number };

/** One field's value: from the most specific rules that set it, merged among equals. */
function pick<T>(ranked: Ranked[], get: (r: ArgumentRule) => T | undefined, merge: (a: T, b: T) => T) {
  let best = -1;
  let out: T | undefined;
  for (const { rule, level } of ranked) {
    const v = get(rule);
    if (v === undefined) continue;
    if (level > best) [best, out] = [level, v];
    else if (level === best) out = merge(out as T, v);
  }
  return out;
}

const max = (a: number, b: number) => Math.max(a, b);
const union = <T>(a: readonly T[], b: readonly T[]) => [...new Set([...a, ...b])];
const first = <T>(a: T) => a;

/** Combines the rules that match a caller into the policy that applies (see the file comment). */
export function resolvePolicy(
  rules: readonly ArgumentRule[],
  who: { project: string; roles: readonly Role[] },
): EffectivePolicy {
  const ranked: Ranked[] = [];
  for (const rule of rules) {
    const level = specificity(rule.scope, who);
    if (level !== undefined) ranked.push({ rule, level });
  }
  const models = new Set(ranked.flatMap(({ rule }) => Object.keys(rule.limits?.devices ?? {})));
  const devices: Record<string, number> = {};
  for (const m of models) {
    const v = pick(ranked, (r) => r.limits?.devices?.[m], max);
    if (v !== undefined) devices[m] = v;
  }
  return {
    defaults: {
      image: pick(ranked, (r) => r.defaults?.image, first),
      hypervisor: pick(ranked, (r) => r.defaults?.hypervisor, first),
    },
    limits: {
      vcpus: pick(ranked, (r) => r.limits?.vcpus, max),
      memoryMiB: pick(ranked, (r) => r.limits?.memoryMiB, max),
      devices,
    },
    allowed: {
      images: pick(ranked, (r) => r.allowed?.images, union),
      hypervisors: pick(ranked, (r) => r.allowed?.hypervisors, union),
      hosts: pick(ranked, (r) => r.allowed?.hosts, union),
      sites: pick(ranked, (r) => r.allowed?.sites, union),
    },
  };
}

/** The spec with the policy's defaults filled in where it leaves a field unset (the same object when none). */
export function applyDefaults(spec: VmSpec, policy: EffectivePolicy): VmSpec {
  const { image, hypervisor } = policy.defaults;
  const fill = {
    ...(spec.image === undefined && image !== undefined ? { image } : {}),
    ...(spec.hypervisor === undefined && hypervisor !== undefined ? { hypervisor } : {}),
  };
  return Object.keys(fill).length ? { ...spec, ...fill } : spec;
}

/** The first way a new VM's spec and site break the policy, if any. */
export function checkCreate(spec: VmSpec, site: string, policy: EffectivePolicy): Violation | undefined {
  const { limits, allowed } = policy;
  const over = (field: string, requested: number, limit: number | undefined): Violation | undefined =>
    limit !== undefined && requested > limit
      ? { field, requested, limit, reason: `${field} ${requested} is over the limit of ${limit}` }
      : undefined;
  const notIn = (field: string, requested: string | undefined, list: readonly string[] | undefined) =>
    list && requested !== undefined && !list.includes(requested)
      ? { field, requested, allowed: list, reason: `${field} ${requested} is not allowed (${listed(list)})` }
      : undefined;
  const imageUnset: Violation | undefined =
    allowed.images && spec.image === undefined
      ? {
          field: "image",
          requested: null,
          allowed: allowed.images,
          reason: `an image must be named (${listed(allowed.images)})`,
        }
      : undefined;
  const hypervisorUnset: Violation | undefined =
    allowed.hypervisors && spec.hypervisor === undefined
      ? {
          field: "hypervisor",
          requested: null,
          allowed: allowed.hypervisors,
          reason: `a hypervisor must be named (${listed(allowed.hypervisors)})`,
        }
      : undefined;
  return (
    over("vcpus", spec.vcpus, limits.vcpus) ??
    over("memoryMiB", spec.memoryMiB, limits.memoryMiB) ??
    Object.entries(spec.devices ?? {})
      .map(([model, n]) => (n > 0 ? over(`devices.${model}`, n, limits.devices[model]) : undefined))
      .find(Boolean) ??
    imageUnset ??
    notIn("image", spec.image, allowed.images) ??
    hypervisorUnset ??
    notIn("hypervisor", spec.hypervisor, allowed.hypervisors) ??
    notIn("site", site, allowed.sites)
  );
}

/** The target host of a start or migration, against `allowed.hosts`. */
export function checkTarget(args: Record<string, unknown>, policy: EffectivePolicy): Violation | undefined {
  const target = args.targetHostId;
  const hosts = policy.allowed.hosts;
  if (typeof target !== "string" || !hosts || hosts.includes(target)) return undefined;
  return {
    field: "targetHostId",
    requested: target,
    allowed: hosts,
    reason: `host ${target} is not an allowed target (${listed(hosts)})`,
  };
}

/** The whole decision for one request: a veto, the spec with defaults, or nothing to change. */
export function decide(rules: readonly ArgumentRule[], req: ActionRequest): Verdict {
  const policy = resolvePolicy(rules, { project: req.project, roles: req.principal.roles });
  const spec = req.create ? applyDefaults(req.spec, policy) : req.spec;
  const violation =
    (req.create ? checkCreate(spec, req.site, policy) : undefined) ?? checkTarget(req.args, policy);
  if (violation) {
    const { reason, ...details } = violation;
    return { veto: reason, details };
  }
  // The scheduler, too, may only choose among the allowed hosts.
  const hosts = policy.allowed.hosts;
  const args = hosts ? { allowedHosts: [...hosts] } : undefined;
  if (spec === req.spec && !args) return undefined;
  return { ...(spec !== req.spec ? { spec } : {}), ...(args ? { args } : {}) };
}

/** The `arguments` plugin. Its options are checked here, so a bad rule stops start-up. */
export function argumentPolicy(options: ArgumentPolicyOptions): Plugin {
  const problems = checkRules(options.rules);
  if (problems.length) throw new Error(`argumentPolicy: ${problems.join("; ")}`);
  const rules = options.rules;
  const hook = (_ctx: unknown, req: ActionRequest) => decide(rules, req);
  return {
    name: options.name ?? "arguments",
    runsIn: "control-plane",
    hooks: { start_request: hook, migrate_request: hook },
  };
}

export function checkRules(rules: readonly ArgumentRule[] | undefined): string[] {
  if (!Array.isArray(rules)) return ["rules must be a list"];
  const problems: string[] = [];
  rules.forEach((r, i) => {
    const at = `rules[${i}]`;
    if (r.scope?.projects && r.scope.projects.length === 0) problems.push(`${at}.scope.projects is empty`);
    if (r.scope?.roles && r.scope.roles.length === 0) problems.push(`${at}.scope.roles is empty`);
    const limits: [string, unknown][] = [
      ["vcpus", r.limits?.vcpus],
      ["memoryMiB", r.limits?.memoryMiB],
      ...Object.entries(r.limits?.devices ?? {}).map(([m, n]): [string, unknown] => [`devices.${m}`, n]),
    ];
    for (const [field, n] of limits)
      if (n !== undefined && !(Number.isInteger(n) && (n as number) >= 0))
        problems.push(`${at}.limits.${field} must be a whole number ≥ 0`);
  });
  return problems;
}

const listed = (list: readonly string[]) => (list.length ? `allowed: ${list.join(", ")}` : "none allowed");
