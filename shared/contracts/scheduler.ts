/** The scheduler's dry run: where a VM or a cluster would go now, and why, without claiming anything. */
import { z } from "zod";
import { ClusterMember, PolicyName } from "./cluster.ts";
import { Labels, Name } from "./common.ts";
import { Placement, VmSpec } from "./vm.ts";

const Scope = {
  /** The site to decide in; the deployment's default site when absent. */
  site: Name.optional(),
  /** A policy to try; the project's (or the site's default) when absent. */
  policy: PolicyName.optional(),
  /** Whose groups and VMs placement constraints name, and whose policy applies; the caller's when absent. */
  project: z.string().min(1).max(128).optional(),
};

/** One VM: a spec and its placement constraints. */
export const DryRunVm = VmSpec.extend({ ...Scope, placement: Placement.optional() });

/** A cluster's gang, as `POST /v1/clusters` takes it (N alike, or a mix of members), without a name. */
export const DryRunCluster = z.union([
  z.strictObject({ ...Scope, labels: Labels.optional(), members: z.array(ClusterMember).min(1).max(20) }),
  VmSpec.extend({ ...Scope, count: z.number().int().min(1).max(100), placement: Placement.optional() }),
]);

export const DryRunRequest = z
  .union([DryRunVm, ...DryRunCluster.options])
  .meta({ id: "SchedulerDryRunRequest" });
export type DryRunRequest = z.infer<typeof DryRunRequest>;

/** Hosts each filter rejected, by filter: each host counted once, under the first filter it failed. */
export const Rejections = z
  .record(z.string(), z.object({ count: z.number().int(), reason: z.string() }))
  .meta({ id: "Rejections" });

/** An acceptable host: its total score and each weigher's 0..1 score. */
const Candidate = z.object({
  hostId: z.string(),
  score: z.number(),
  scores: z.record(z.string(), z.number()),
});

/** The most candidates a gang's step lists: a 24-member gang over 1,000 hosts in full would be megabytes. */
export const GANG_STEP_CANDIDATES = 20;

/**
 * One member's decision in a gang, over the site as the gang had filled it by then (the members
 * placed before it applied). For the first member of a hard-affinity group the demand weighed is the
 * whole group's, as the gang chooses that group's host for all of them.
 */
export const DryRunGangStep = z
  .object({
    /** `<role>-<n>`, as in `assignments`. */
    member: z.string(),
    /** The host this member took as the gang filled the site (even if a later member failed); null when none fit. */
    hostId: z.string().nullable(),
    /** How many hosts were acceptable; `candidates` lists the best of them. */
    total: z.number().int(),
    /** The best acceptable hosts (at most 20), best first. */
    candidates: z.array(Candidate).max(GANG_STEP_CANDIDATES),
    /** Why the other hosts were rejected for this member. */
    rejections: Rejections,
  })
  .meta({ id: "SchedulerDryRunGangStep" });
export type DryRunGangStep = z.infer<typeof DryRunGangStep>;

export const DryRunResponse = z
  .object({
    site: z.string(),
    /** The policy that decided. */
    policy: z.string(),
    /** Hosts of the site the filters looked at. */
    considered: z.number().int(),
    /** One VM: every acceptable host, best first. Empty for a gang (see `gang.steps`). */
    candidates: z.array(Candidate),
    /** Why hosts were rejected (for a gang: for the member that found no host). */
    rejections: Rejections,
    /** Why nothing fits, as a failed start would say; null when something does. */
    message: z.string().nullable(),
    /** A gang's outcome: a host per member (`<role>-<n>`), or none for any. Null for one VM. */
    gang: z
      .object({
        placed: z.boolean(),
        assignments: z.array(z.object({ member: z.string(), hostId: z.string().nullable() })),
        failedMember: z.string().nullable(),
        /**
         * Each member's decision in the order the gang placed them (largest first), up to and
         * including the member that found no host when the gang fails.
         */
        steps: z.array(DryRunGangStep),
      })
      .nullable(),
  })
  .meta({ id: "SchedulerDryRunResponse" });
export type DryRunResponse = z.infer<typeof DryRunResponse>;
