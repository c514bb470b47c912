/** `GET /v1/quotas`: a project's limits and usage under the quotas plugin. */
import { isAdmin, type Principal } from "../auth/principal.ts";
import type { Quota } from "../contracts/quota.ts";
import { ErrorCode, UsherError } from "../errors.ts";
import { quotaLimitsOf, quotaUsage } from "../plugins/builtin/quotas.ts";
import type { Deps } from "./context.ts";

/** The caller's own project's quota, or (admins only) any project's. 404 when the site runs no quotas. */
export async function getQuota(
  deps: Deps,
  principal: Principal,
  project = principal.project,
): Promise<Quota> {
  if (project !== principal.project && !isAdmin(principal))
    throw new UsherError(ErrorCode.forbidden, "only admins may read another project's quota");
  const limitsFor = quotaLimitsOf(deps);
  if (!limitsFor) throw new UsherError(ErrorCode.notFound, "this site runs no quotas plugin");
  return { project, limits: limitsFor(project), used: await quotaUsage(deps, project) };
}
