/**
 * The scheduler's dry run: what the pipeline would decide for a VM or a cluster's gang over the
 * site as it stands, with every candidate's scores and every filter's rejections (for a gang, member
 * by member as the gang fills the site). Claims nothing.
 */
import { isAdmin, type Principal } from "../auth/principal.ts";
import {
  type DryRunGangStep,
  type DryRunRequest,
  type DryRunResponse,
  GANG_STEP_CANDIDATES,
} from "../contracts/scheduler.ts";
import { ErrorCode, UsherError, ValidationError } from "../errors.ts";
import { groupDemand, largestFirst, placeGang } from "../scheduler/gang.ts";
import { dryRun, explain, placeOne, type Snapshot } from "../scheduler/pipeline.ts";
import type { Policy } from "../scheduler/policy.ts";
import type { Registry } from "../scheduler/registry.ts";
import type { Demand } from "../scheduler/types.ts";
import { checkPolicyName, expand, MAX_CLUSTER_VMS, specOf } from "./clusters.ts";
import type { Deps } from "./context.ts";
import { demandOf, loadSnapshot, policyFor } from "./site-snapshot.ts";

/** Runs the request's policy (or the project's) over a fresh snapshot of its site. */
export async function schedulerDryRun(
  deps: Deps,
  principal: Principal,
  req: DryRunRequest,
): Promise<DryRunResponse> {
  const project = req.project ?? principal.project;
  // Another project's groups say where its VMs are: that is for admins.
  if (project !== principal.project && !isAdmin(principal))
    throw new UsherError(ErrorCode.forbidden, "only admins may dry-run for another project");
  const site = req.site ?? deps.config.defaultSite;
  checkPolicyName(deps, req.policy);
  const { name: policyName, policy, registry } = policyFor(deps, { cluster: req.policy, project });
  if (!("members" in req) && !("count" in req)) {
    const demand = demandOf({ project, spec: specOf(req), placement: req.placement });
    const { snapshot } = await loadSnapshot(deps, site, { project, demands: [demand] });
    const run = dryRun(snapshot, demand, policy, registry);
    return {
      site,
      policy: policyName,
      considered: run.considered,
      candidates: run.candidates,
      rejections: run.rejections,
      message: run.candidates.length ? null : `${explain(run)} in site ${site}`,
      gang: null,
    };
  }
  const members = expand(req);
  if (members.length > MAX_CLUSTER_VMS)
    throw new ValidationError(`a cluster holds at most ${MAX_CLUSTER_VMS} VMs per request`);
  const perRole = new Map<string, number>();
  const names = members.map((m) => {
    const n = (perRole.get(m.role) ?? 0) + 1;
    perRole.set(m.role, n);
    return `${m.role}-${n}`;
  });
  const demands = members.map((m) => demandOf({ project, spec: m.spec, placement: m.placement }));
  const { snapshot } = await loadSnapshot(deps, site, { project, demands });
  // The steps first: they leave the snapshot as it was, while a gang that fits leaves it filled.
  const steps = gangSteps(snapshot, demands, names, policy, registry);
  const r = placeGang(snapshot, demands, policy, registry);
  const failed = "failed" in r ? r : undefined;
  return {
    site,
    policy: policyName,
    considered: failed?.considered ?? snapshot.presentCount,
    candidates: [],
    rejections: failed?.rejections ?? {},
    message: failed
      ? `no member would be placed, as member ${names[failed.failed]} fits no host: ${explain(failed)} in site ${site}`
      : null,
    gang: {
      placed: !failed,
      assignments: names.map((member, i) => ({
        member,
        hostId: "assignments" in r ? r.assignments[i]! : null,
      })),
      failedMember: failed ? names[failed.failed]! : null,
      steps,
    },
  };
}

/**
 * The gang's decisions one member at a time, as `placeGang` makes them: largest first, each over the
 * snapshot holding the members before it, up to the first member that finds no host. Each step lists
 * the best `GANG_STEP_CANDIDATES` hosts of the member's dry run. Leaves the snapshot as it found it.
 */
export function gangSteps(
  snapshot: Snapshot,
  demands: readonly Demand[],
  names: readonly string[],
  policy: Policy,
  registry?: Registry,
): DryRunGangStep[] {
  const steps: DryRunGangStep[] = [];
  const applied: [string, Demand][] = [];
  try {
    for (const i of largestFirst(demands)) {
      const demand = groupDemand(snapshot, demands, i);
      const run = dryRun(snapshot, demand, policy, registry);
      // The host the gang takes (the best candidate, by the same scores), from the gang's own call.
      const hostId = placeOne(snapshot, demand, policy, registry).hostId;
      steps.push({
        member: names[i]!,
        hostId: hostId ?? null,
        total: run.candidates.length,
        candidates: run.candidates.slice(0, GANG_STEP_CANDIDATES),
        rejections: run.rejections,
      });
      if (hostId === undefined) break;
      snapshot.apply(hostId, demands[i]!);
      applied.push([hostId, demands[i]!]);
    }
  } finally {
    for (const [hostId, d] of applied.reverse()) snapshot.release(hostId, d);
  }
  return steps;
}
