/**
 * The leases plugin: an optional lifetime for VMs. A VM asks for one at creation (`leaseSeconds`) or
 * gets the project's default; the lease starts when the VM is first given a home host (the item is
 * written in that claim's transaction) and ends in the transaction of the destroy or delete that
 * releases it. Other releases (a failed start, an evacuation that restarts the VM elsewhere) keep it:
 * the VM lives on. A lease whose VM ended up destroyed some other way is dropped by the sweep. It writes
 * `lease.expiring` once, `warnBeforeSeconds` ahead, and at expiry writes `lease.expired` once and
 * submits the configured action (`shutdown` or `destroy`) as an operation of the system principal
 * `usher:leases`. Renewal is `POST /v1/vms/{id}/lease` (shared/services/leases.ts).
 *
 *   leases({ defaultSeconds: 86_400, maxSeconds: 7 * 86_400, warnBeforeSeconds: 3600, onExpiry: "shutdown",
 *            projects: { ci: { maxSeconds: 3600, onExpiry: "destroy" } } })
 */
import type { Principal } from "../../auth/principal.ts";
import { ErrorCode, UsherError } from "../../errors.ts";
import { newId } from "../../ids.ts";
import type { Deps } from "../../services/context.ts";
import { eventItem } from "../../services/events.ts";
import { requestHash } from "../../services/idempotency.ts";
import {
  checkLeaseOptions,
  type LeaseItem,
  type LeaseOptions,
  type LeaseRules,
  leaseKeys,
  leasePut,
  registerLeasePolicy,
  rulesFor,
} from "../../services/leases.ts";
import { getVmItem, requestAction } from "../../services/vms.ts";
import { deleteOf, queryAll, transact, updateOf } from "../../store/base.ts";
import { failedConditions, isTransactionConflict } from "../../store/errors.ts";
import type { VmItem } from "../../store/items.ts";
import { keys } from "../../store/keys.ts";
import type { ActionRequest, Contribution, Plugin, PluginContext, Verdict } from "../types.ts";

export type { LeaseOptions, LeaseRules } from "../../services/leases.ts";

/** Who submits expiry's actions. */
export const LEASES_SUBJECT = "usher:leases";

/** Builds the plugin; bad options throw here, when the config is loaded. */
export function leases(options: LeaseOptions): Plugin {
  const problems = checkLeaseOptions(options);
  if (problems.length) throw new Error(`leases plugin: ${problems.join("; ")}`);
  return registerLeasePolicy(
    {
      name: "leases",
      runsIn: "control-plane",
      // The sweep may have many leases to act on; it stops early when this runs out (ctx.signal).
      timeoutMs: 30_000,
      hooks: {
        start_request: (ctx, req) => startVerdict(rulesFor(options, req.project), req, ctx.deps.now()),
        claim: (ctx, batch) => {
          const seconds = batch.op.args.leaseSeconds;
          // A migration's second claim is not a new home; a VM placed again keeps the lease it has.
          const fresh = batch.placements.filter(({ vm }) => vm.leaseExpiresAt === undefined);
          if (batch.field !== "hostId" || typeof seconds !== "number" || !fresh.length) return undefined;
          const expiresAt = new Date(ctx.deps.now().getTime() + seconds * 1000).toISOString();
          return {
            items: fresh.map(({ vm }) => leasePut(ctx.deps, vm, batch.op.id, expiresAt)),
            vmSet: Object.fromEntries(fresh.map(({ vm }) => [vm.id, { leaseExpiresAt: expiresAt }])),
          } satisfies Contribution;
        },
        release: (ctx, batch) => {
          // Only a release that ends the VM's life ends its lease (see above).
          if (batch.op?.action !== "destroy" && batch.op?.action !== "delete") return undefined;
          // The lease item and the VM's copy are written together, so the copy says which VMs have one.
          const leased = batch.vms.filter((vm) => vm.leaseExpiresAt !== undefined);
          if (!leased.length) return undefined;
          // No condition: whatever lease the VM has ends with its home host.
          return {
            items: leased.map((vm) => ({ Delete: deleteOf(ctx.deps.db.table, leaseKeys.lease(vm.id)) })),
            vmRemove: Object.fromEntries(leased.map((vm) => [vm.id, ["leaseExpiresAt"]])),
          };
        },
        sweep: (ctx) => sweepLeases(ctx, options),
      },
    },
    options,
  );
}

/**
 * A new VM: the asked lease within `maxSeconds`, else the default. An existing VM whose lease has
 * run out may not start until it is renewed; one about to be placed afresh gets the default.
 */
export function startVerdict(rules: LeaseRules, req: ActionRequest, now: Date): Verdict {
  if (req.create) {
    const asked = req.args.leaseSeconds;
    if (asked !== undefined && !(typeof asked === "number" && Number.isInteger(asked) && asked >= 1))
      return { veto: "leaseSeconds must be a whole number of seconds, at least 1" };
    if (typeof asked === "number" && asked > rules.maxSeconds)
      return {
        veto: `a lease may last at most ${rules.maxSeconds} seconds`,
        details: { leaseSeconds: asked, maxSeconds: rules.maxSeconds },
      };
    const seconds = asked ?? rules.defaultSeconds;
    return seconds === undefined ? undefined : { args: { leaseSeconds: seconds } };
  }
  const vm = req.vm;
  if (!vm) return undefined;
  if (vm.leaseExpiresAt && Date.parse(vm.leaseExpiresAt) <= now.getTime())
    return {
      veto: `the VM's lease expired at ${vm.leaseExpiresAt}; renew it (POST /v1/vms/${vm.id}/lease) first`,
      details: { leaseExpiresAt: vm.leaseExpiresAt },
    };
  if (!vm.hostId && !vm.leaseExpiresAt && rules.defaultSeconds !== undefined)
    return { args: { leaseSeconds: rules.defaultSeconds } };
  return undefined;
}

/**
 * One pass: warns about leases within their warning time, acts on expired ones. Every step is a
 * conditional write on the lease item, so sweeps running at once warn and expire each lease once.
 */
export async function sweepLeases(ctx: PluginContext, options: LeaseOptions): Promise<void> {
  const { deps, signal } = ctx;
  const now = deps.now();
  const warnMost = Math.max(
    options.warnBeforeSeconds,
    ...Object.values(options.projects ?? {}).map((p) => p.warnBeforeSeconds ?? 0),
  );
  const horizon = new Date(now.getTime() + warnMost * 1000).toISOString();
  const due = await queryAll<LeaseItem>(deps.db, {
    IndexName: "gsi2",
    KeyConditionExpression: "gsi2pk = :pk AND gsi2sk <= :horizon",
    // "~" sorts after every VM id: every lease ending up to the horizon is included.
    ExpressionAttributeValues: { ":pk": leaseKeys.index("", "").gsi2pk, ":horizon": `${horizon}~` },
  });
  for (const lease of due) {
    if (signal.aborted) return;
    const rules = rulesFor(options, lease.project);
    const ends = Date.parse(lease.leaseExpiresAt);
    try {
      if (lease.expiredAt || ends <= now.getTime()) await expire(ctx, lease, rules);
      else if (!lease.warnedAt && ends - rules.warnBeforeSeconds * 1000 <= now.getTime())
        await warn(deps, lease, rules);
    } catch (err) {
      ctx.log.error("lease sweep could not handle a lease", { vmId: lease.vmId, err });
    }
  }
}

/** Writes `lease.expiring`, once per expiry. */
async function warn(deps: Deps, lease: LeaseItem, rules: LeaseRules): Promise<void> {
  const at = deps.now().toISOString();
  const ok = await once(deps, [
    {
      // Once per expiry: another sweep's warning, a renewal or an expiry since we read it wins.
      Update: updateOf(
        deps.db.table,
        leaseKeys.lease(lease.vmId),
        { set: { warnedAt: at, updatedAt: at } },
        {
          expr: "leaseExpiresAt = :seen AND attribute_not_exists(warnedAt) AND attribute_not_exists(expiredAt)",
          values: { ":seen": lease.leaseExpiresAt },
        },
      ),
    },
    eventItem(deps, {
      subjectPk: keys.vm(lease.vmId).pk,
      project: lease.project,
      type: "lease.expiring",
      actor: LEASES_SUBJECT,
      data: {
        vmId: lease.vmId,
        expiresAt: lease.leaseExpiresAt,
        secondsLeft: Math.max(0, Math.round((Date.parse(lease.leaseExpiresAt) - Date.parse(at)) / 1000)),
        onExpiry: rules.onExpiry,
      },
    }),
  ]);
  if (ok) deps.log.info("lease expiring", { vmId: lease.vmId, expiresAt: lease.leaseExpiresAt });
}

/**
 * Expiry in three steps, each safe to repeat: (1) decide, writing `lease.expired`, once; (2) submit
 * the action with an idempotency key of this lease's expiry, so however many sweeps get here (or
 * retry after a crash) there is one operation; (3) record it and take the lease out of the index.
 * A renewal is refused between (1) and (3), so a renewed lease is never acted on.
 */
async function expire(ctx: PluginContext, lease: LeaseItem, rules: LeaseRules): Promise<void> {
  const { deps } = ctx;
  const vm = await getVmItem(deps, lease.vmId);
  if (!vm || vm.state === "destroyed") return drop(deps, lease, vm);
  const seen = { ":seen": lease.leaseExpiresAt };
  if (!lease.expiredAt) {
    const at = deps.now().toISOString();
    const decided = await once(deps, [
      {
        // Once per expiry: a concurrent sweep or a renewal since we read it wins.
        Update: updateOf(
          deps.db.table,
          leaseKeys.lease(lease.vmId),
          { set: { expiredAt: at, updatedAt: at } },
          { expr: "leaseExpiresAt = :seen AND attribute_not_exists(expiredAt)", values: seen },
        ),
      },
      eventItem(deps, {
        subjectPk: keys.vm(vm.id).pk,
        project: vm.project,
        type: "lease.expired",
        actor: LEASES_SUBJECT,
        data: { vmId: vm.id, expiresAt: lease.leaseExpiresAt, onExpiry: rules.onExpiry },
      }),
    ]);
    if (!decided) return;
    deps.log.info("lease expired", { vmId: vm.id, expiresAt: lease.leaseExpiresAt, action: rules.onExpiry });
  }
  const principal: Principal = { subject: LEASES_SUBJECT, project: vm.project, roles: ["admin"] };
  const action = { action: rules.onExpiry };
  let outcome: { actionOpId: string } | { actionSkipped: string };
  try {
    const res = await requestAction(
      deps,
      {
        principal,
        requestId: newId("req"),
        idempotency: {
          scope: JSON.stringify([vm.project, LEASES_SUBJECT]),
          key: `lease-${vm.id}-${lease.leaseExpiresAt}`,
          hash: await requestHash("POST", `/v1/vms/${vm.id}/actions`, action),
        },
      },
      vm.id,
      action,
    );
    outcome = { actionOpId: (res.body as { operation: { id: string } }).operation.id };
  } catch (err) {
    // Transient (a policy plugin that could not decide, contention, a twin sweep mid-submit): next sweep.
    if (!(err instanceof UsherError) || TRANSIENT.has(err.code)) throw err;
    // The VM cannot take the action (already stopped, vetoed by policy): the lease is done with anyway.
    ctx.log.warn("lease expiry action not submitted", {
      vmId: vm.id,
      action: rules.onExpiry,
      code: err.code,
    });
    outcome = { actionSkipped: err.code };
  }
  const at = deps.now().toISOString();
  await once(deps, [
    {
      // Once: only the expiry decided above, not yet recorded by a twin sweep.
      Update: updateOf(
        deps.db.table,
        leaseKeys.lease(lease.vmId),
        { set: { ...outcome, actionedAt: at, updatedAt: at }, remove: ["gsi2pk", "gsi2sk"] },
        {
          expr: "leaseExpiresAt = :seen AND attribute_exists(expiredAt) AND attribute_not_exists(actionedAt)",
          values: seen,
        },
      ),
    },
  ]);
}

const TRANSIENT = new Set<string>([
  ErrorCode.pluginFailed,
  ErrorCode.conflict,
  ErrorCode.idempotencyInFlight,
  ErrorCode.queueSendFailed,
]);

/** A lease whose VM is gone or destroyed holds nothing: it goes, with the VM's copy if the VM remains. */
async function drop(deps: Deps, lease: LeaseItem, vm: VmItem | undefined): Promise<void> {
  await once(deps, [
    {
      // Only the lease we read: a new placement's lease (another expiry) stays.
      Delete: deleteOf(deps.db.table, leaseKeys.lease(lease.vmId), {
        expr: "leaseExpiresAt = :seen",
        values: { ":seen": lease.leaseExpiresAt },
      }),
    },
    ...(vm?.leaseExpiresAt === lease.leaseExpiresAt
      ? [
          {
            // The VM's copy, only if it is still this lease's.
            Update: updateOf(
              deps.db.table,
              keys.vm(vm.id),
              { remove: ["leaseExpiresAt"] },
              { expr: "leaseExpiresAt = :seen", values: { ":seen": lease.leaseExpiresAt } },
            ),
          },
        ]
      : []),
  ]);
  deps.log.info("lease dropped: its VM holds nothing", { vmId: lease.vmId, state: vm?.state ?? "deleted" });
}

/** Runs a conditional transaction; false when a condition failed or another transaction got there first. */
async function once(deps: Deps, items: Parameters<typeof transact>[1]): Promise<boolean> {
  try {
    await transact(deps.db, items);
    return true;
  } catch (err) {
    if (failedConditions(err)?.length || isTransactionConflict(err)) return false;
    throw err;
  }
}
