/**
 * Leases: a VM's optional lifetime. A lease is an item of its own, `LEASE#<vmId>`, listed in the
 * sparse gsi2 partition `LEASES` by expiry while the sweep still has something to do with it (a VM
 * item's gsi2 belongs to its cluster). The VM carries a copy of the expiry (`leaseExpiresAt`) for its
 * view; every write of one writes the other in the same transaction. The leases plugin
 * (shared/plugins/builtin/leases.ts) creates a lease with the VM's first home-host claim, removes it
 * with the destroy or delete that releases that host, and acts on expiry in the sweep; this module
 * holds the policy, the item and renewal.
 */

import type { Principal } from "../auth/principal.ts";
import type { Lease, LeaseExpiryAction, RenewLease } from "../contracts/lease.ts";
import { ConflictError, ErrorCode, NotFoundError, UsherError, ValidationError } from "../errors.ts";
import { originOf } from "../plugins/config.ts";
import type { Plugin } from "../plugins/types.ts";
import { getItem, putOf, type TxItem, transact, updateOf } from "../store/base.ts";
import { failedConditions, isTransactionConflict } from "../store/errors.ts";
import type { VmItem } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";
import { eventItem } from "./events.ts";
import { idempotent, type StoredResponse } from "./idempotency.ts";
import { getVisibleVmItem, type RequestContext } from "./vms.ts";

/** One project's lease policy. */
export type LeaseRules = {
  /** The lease of a VM that asks for none; without it such a VM has no lease. */
  defaultSeconds?: number | undefined;
  /** The longest lease, in seconds from now, at creation and at renewal. */
  maxSeconds: number;
  /** How long before expiry the `lease.expiring` warning is written. */
  warnBeforeSeconds: number;
  /** What expiry does to the VM. */
  onExpiry: LeaseExpiryAction;
};

export type LeaseOptions = LeaseRules & {
  /** By project: rules that differ from the site's (absent fields are the site's). */
  projects?: Record<string, Partial<LeaseRules>> | undefined;
};

/** The lease item as stored. */
export type LeaseItem = {
  type: "lease";
  vmId: string;
  project: string;
  /** Not `expiresAt`: that is the table's TTL attribute, and a lease must never vanish on its own. */
  leaseExpiresAt: string;
  /** The operation whose placement created it. */
  opId: string;
  /** Set once per expiry by the sweep's warning; a renewal clears it. */
  warnedAt?: string;
  /** Set once when the sweep decides the lease has expired (written with `lease.expired`). */
  expiredAt?: string;
  /** Set when expiry's action was submitted (or found impossible); the lease then leaves the index. */
  actionedAt?: string;
  actionOpId?: string;
  /** The error code that kept expiry's action from being submitted. */
  actionSkipped?: string;
  createdAt: string;
  updatedAt: string;
  gsi2pk?: string;
  gsi2sk?: string;
};

/** The lease's keys. Kept with the only code that reads or writes lease items. */
export const leaseKeys = {
  lease: (vmId: string) => ({ pk: `LEASE#${vmId}`, sk: "LEASE" }),
  /** Sparse: leases the sweep still has to warn about or act on, by expiry. */
  index: (expiresAt: string, vmId: string) => ({ gsi2pk: "LEASES", gsi2sk: `${expiresAt}#${vmId}` }),
} as const;

const registry = new WeakMap<Plugin, LeaseOptions>();

/** Records a leases plugin's options, so the renewal API finds the policy the site configured. */
export function registerLeasePolicy(plugin: Plugin, options: LeaseOptions): Plugin {
  registry.set(plugin, options);
  return plugin;
}

/** The configured leases plugin's options; undefined when the site runs none. */
export function leaseOptionsOf(deps: Deps): LeaseOptions | undefined {
  for (const plugin of deps.plugins.list) {
    const options = registry.get(originOf(plugin));
    if (options) return options;
  }
  return undefined;
}

export function rulesFor(options: LeaseOptions, project: string): LeaseRules {
  const { projects, ...site } = options;
  const own = Object.entries(projects?.[project] ?? {}).filter(([, v]) => v !== undefined);
  return { ...site, ...Object.fromEntries(own) };
}

/** Every problem with a set of options (empty when they are good). */
export function checkLeaseOptions(options: LeaseOptions): string[] {
  const problems: string[] = [];
  const whole = (v: unknown, min: number) => typeof v === "number" && Number.isInteger(v) && v >= min;
  const check = (where: string, r: LeaseRules) => {
    if (!whole(r.maxSeconds, 1)) problems.push(`${where}maxSeconds must be a whole number ≥ 1`);
    if (r.defaultSeconds !== undefined && !(whole(r.defaultSeconds, 1) && r.defaultSeconds <= r.maxSeconds))
      problems.push(`${where}defaultSeconds must be a whole number in [1, maxSeconds]`);
    if (!whole(r.warnBeforeSeconds, 0)) problems.push(`${where}warnBeforeSeconds must be a whole number ≥ 0`);
    if (r.onExpiry !== "shutdown" && r.onExpiry !== "destroy")
      problems.push(`${where}onExpiry must be "shutdown" or "destroy"`);
  };
  check("", options);
  for (const project of Object.keys(options.projects ?? {}))
    check(`projects.${project}: `, rulesFor(options, project));
  return problems;
}

/** The Put of a new lease (the plugin adds it to the claim of the VM's home host). */
export function leasePut(
  deps: Deps,
  vm: Pick<VmItem, "id" | "project">,
  opId: string,
  expiresAt: string,
): TxItem {
  const now = deps.now().toISOString();
  const item: LeaseItem = {
    type: "lease",
    vmId: vm.id,
    project: vm.project,
    leaseExpiresAt: expiresAt,
    opId,
    createdAt: now,
    updatedAt: now,
  };
  // No condition: a lease left over from an earlier placement (a release that missed it) is replaced.
  return {
    Put: putOf(deps.db.table, { ...item, ...leaseKeys.lease(vm.id), ...leaseKeys.index(expiresAt, vm.id) }),
  };
}

export function leaseView(item: LeaseItem, options: LeaseOptions): Lease {
  return {
    vmId: item.vmId,
    project: item.project,
    expiresAt: item.leaseExpiresAt,
    onExpiry: rulesFor(options, item.project).onExpiry,
    warnedAt: item.warnedAt ?? null,
    expiredAt: item.expiredAt ?? null,
    expiryOperationId: item.actionOpId ?? null,
    createdAt: item.createdAt,
    updatedAt: item.updatedAt,
  };
}

function enabled(deps: Deps): LeaseOptions {
  const options = leaseOptionsOf(deps);
  if (!options) throw new UsherError(ErrorCode.notFound, "leases are not enabled at this site");
  return options;
}

/** The VM's lease, for a change: a VM without one is a conflict (409). */
async function leaseOf(deps: Deps, vm: VmItem): Promise<LeaseItem> {
  const lease = await getItem<LeaseItem>(deps.db, leaseKeys.lease(vm.id));
  if (!lease)
    throw new ConflictError(ErrorCode.invalidState, `VM ${vm.id} has no lease`, {
      details: { state: vm.state },
    });
  return lease;
}

/** `GET /v1/vms/{id}/lease`: 404 when the VM has none. */
export async function getLease(deps: Deps, principal: Principal, vmId: string): Promise<Lease> {
  const options = enabled(deps);
  const vm = await getVisibleVmItem(deps, principal, vmId);
  const lease = await getItem<LeaseItem>(deps.db, leaseKeys.lease(vm.id));
  if (!lease) throw new UsherError(ErrorCode.notFound, `VM ${vm.id} has no lease`);
  return leaseView(lease, options);
}

/**
 * `POST /v1/vms/{id}/lease`: moves the expiry (within the project's `maxSeconds` from now) and re-arms
 * the warning. A VM without a lease answers 409: a lease comes with a placement, under the policy that
 * applied then. An expired lease may be renewed once its action was submitted (a VM shut down by its
 * lease may then start again), not while the sweep is acting on it.
 */
export async function renewLease(
  deps: Deps,
  ctx: RequestContext,
  vmId: string,
  body: RenewLease,
): Promise<StoredResponse> {
  const options = enabled(deps);
  return idempotent(deps, ctx.idempotency, async (record) => {
    for (let attempt = 0; ; attempt++) {
      const vm = await getVisibleVmItem(deps, ctx.principal, vmId);
      const lease = await leaseOf(deps, vm);
      if (lease.expiredAt && !lease.actionedAt)
        throw new ConflictError(ErrorCode.conflict, "the lease is expiring right now; try again shortly");
      const { maxSeconds } = rulesFor(options, vm.project);
      const now = deps.now().getTime();
      const to =
        "extendSeconds" in body
          ? Math.max(now, Date.parse(lease.leaseExpiresAt)) + body.extendSeconds * 1000
          : Date.parse(body.expiresAt);
      if (to <= now) throw new ValidationError("expiresAt must be in the future");
      if (to - now > maxSeconds * 1000)
        throw new ValidationError(`a lease may end at most ${maxSeconds} seconds from now`, {
          maxSeconds,
          latest: new Date(now + maxSeconds * 1000).toISOString(),
        });
      const expiresAt = new Date(to).toISOString();
      const at = new Date(now).toISOString();
      const renewed: LeaseItem = {
        ...lease,
        leaseExpiresAt: expiresAt,
        updatedAt: at,
        warnedAt: undefined,
        expiredAt: undefined,
        actionOpId: undefined,
        actionedAt: undefined,
        actionSkipped: undefined,
      };
      const response = { status: 200, body: leaseView(renewed, options) };
      try {
        await transact(deps.db, [
          {
            // Only the lease we read, and not while the sweep acts on its expiry: a concurrent renewal
            // or expiry makes us read again rather than overwrite what it decided.
            Update: updateOf(
              deps.db.table,
              leaseKeys.lease(vm.id),
              {
                set: { leaseExpiresAt: expiresAt, updatedAt: at, ...leaseKeys.index(expiresAt, vm.id) },
                remove: ["warnedAt", "expiredAt", "actionedAt", "actionOpId", "actionSkipped"],
              },
              {
                expr: "leaseExpiresAt = :seen AND (attribute_not_exists(expiredAt) OR attribute_exists(actionedAt))",
                values: { ":seen": lease.leaseExpiresAt },
              },
            ),
          },
          {
            // The VM's copy of the expiry; the VM must still exist.
            Update: updateOf(
              deps.db.table,
              keys.vm(vm.id),
              { set: { leaseExpiresAt: expiresAt, updatedAt: at }, inc: { version: 1 } },
              { expr: "attribute_exists(pk)" },
            ),
          },
          eventItem(deps, {
            subjectPk: keys.vm(vm.id).pk,
            project: vm.project,
            type: "lease.renewed",
            requestId: ctx.requestId,
            actor: ctx.principal.subject,
            data: { vmId: vm.id, from: lease.leaseExpiresAt, to: expiresAt },
          }),
          ...record(response),
        ]);
        return response;
      } catch (err) {
        const failed = failedConditions(err) ?? [];
        if (failed.includes(1)) throw new NotFoundError("VM", vmId);
        if ((failed.includes(0) || isTransactionConflict(err)) && attempt < 5) continue;
        if (failed.includes(0) || isTransactionConflict(err))
          throw new ConflictError(ErrorCode.conflict, "the lease is changing too often; try again", {
            cause: err,
          });
        throw err;
      }
    }
  });
}
