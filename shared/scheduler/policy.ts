/**
 * Policies: which filters run, in which order, and how the weighers are mixed. Chosen per project or
 * per virtual cluster by name; the built-ins differ only in their weighers.
 */
import type { FilterName } from "./filters.ts";
import type { WeigherName } from "./weighers.ts";

/**
 * Names are the built-ins' (checked by the compiler) or, in a site's policies, plugins' stages too
 * (checked against the site's registry at start-up: see `site-policies.ts`).
 */
export type Policy = {
  /** Run in this order; a rejected host is counted under the first filter it fails. */
  readonly filters: readonly (FilterName | (string & {}))[];
  /** Each weigher's 0..1 score is multiplied by its weight; the highest total wins. */
  readonly weighers: readonly { readonly name: WeigherName | (string & {}); readonly weight: number }[];
};

/**
 * Every filter. Starting with host state, hypervisor and memory lets the pipeline answer those three
 * from its free-memory index instead of visiting each host; static reasons (state, kind) come before
 * capacity so "no capacity" names the most basic one. Constraints on groups come last: they pass
 * most hosts and cost a map lookup.
 */
export const ALL_FILTERS = [
  "host_state",
  "hypervisor",
  "memory",
  "vcpus",
  "devices",
  "labels",
  "affinity",
  "anti_affinity",
  "same_host",
  "different_host",
] as const satisfies readonly FilterName[];

// Weights act as tiers (every score is 0..1): keeping GPU hosts for GPU work (16) outranks keeping
// their GPUs usable (8), which outranks soft affinity (2), which outranks the fit itself (1).
export const POLICIES = {
  /** Best fit, GPU-aware: the default, the packer (most placed before the first failure). */
  pack: {
    filters: ALL_FILTERS,
    weighers: [
      { name: "device_reserve", weight: 16 },
      { name: "fragmentation", weight: 8 },
      { name: "soft_affinity", weight: 2 },
      { name: "pack", weight: 1 },
    ],
  },
  /** Least allocated first: spreads load and blast radius, at the cost of fragmentation. */
  spread: {
    filters: ALL_FILTERS,
    weighers: [
      { name: "device_reserve", weight: 4 },
      { name: "soft_affinity", weight: 2 },
      { name: "spread", weight: 1 },
    ],
  },
  /** Least loaded (agent-reported), ties towards the least allocated. */
  load: {
    filters: ALL_FILTERS,
    weighers: [
      { name: "device_reserve", weight: 4 },
      { name: "soft_affinity", weight: 2 },
      { name: "load", weight: 1 },
      { name: "spread", weight: 0.25 },
    ],
  },
  /** Fill hosts already in use before waking an idle one, best fit among them. */
  "power-saving": {
    filters: ALL_FILTERS,
    weighers: [
      { name: "device_reserve", weight: 8 },
      { name: "power_saving", weight: 4 },
      { name: "soft_affinity", weight: 2 },
      { name: "pack", weight: 1 },
    ],
  },
} as const satisfies Record<string, Policy>;

export type PolicyName = keyof typeof POLICIES;

export const DEFAULT_POLICY: PolicyName = "pack";

/** Every built-in policy's name, for a config or contract enum (`z.enum(POLICY_NAMES)`). */
export const POLICY_NAMES = Object.keys(POLICIES) as [PolicyName, ...PolicyName[]];

export function isPolicyName(name: string): name is PolicyName {
  return Object.hasOwn(POLICIES, name);
}

/** The built-in policy of that name; the default (`pack`) when none is set. */
export function resolvePolicy(name?: PolicyName | undefined): Policy {
  return POLICIES[name ?? DEFAULT_POLICY];
}
