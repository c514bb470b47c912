/**
 * The scheduler's dry run: what the pipeline would decide for a VM or a cluster's gang over the
 * site as it stands, with every candidate's scores and every filter's rejections. Claims nothing.
 */
import type { Principal } from "../auth/principal.ts";
import type { DryRunRequest, DryRunResponse } from "../contracts/scheduler.ts";
import { ValidationError } from "../errors.ts";
import { placeGang } from "../scheduler/gang.ts";
import { dryRun, explain } from "../scheduler/pipeline.ts";
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
    },
  };
}
