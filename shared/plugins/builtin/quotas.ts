/**
 * Quotas per project: VMs, vCPUs and memory held. A VM counts while it holds a home host (running,
 * paused, suspended or stopped: all keep their claim), and the count moves in the capacity claim's own
 * transaction: one usage item per project, updated under a condition that it stays within the limit.
 * DynamoDB conditions cannot add, so the condition compares the usage before the update with
 * `limit − demand`, computed here. What a VM was charged is kept on it (`quotaCharge`), so a release
 * gives back exactly that, and VMs placed before the plugin was enabled are never given back.
 *
 * A request that could never fit (one VM bigger than the whole quota) is vetoed at once by the request
 * hook; one that does not fit now fails its operation with `quota_exceeded`.
 */

import { ErrorCode, UsherError } from "../../errors.ts";
import type { Deps } from "../../services/context.ts";
import { getItem, type TxItem, updateOf } from "../../store/base.ts";
import type { VmItem } from "../../store/items.ts";
import { originOf } from "../config.ts";
import type { ActionRequest, ClaimBatch, Contribution, Plugin, ReleaseBatch, Verdict } from "../types.ts";
import { movesHome } from "./home.ts";

/** Limits of one project; absent inherits the default, `null` is unlimited. */
export type QuotaLimits = { vms?: number | null; vcpus?: number | null; memoryMiB?: number | null };

export type QuotaOptions = {
  /** Unique per config; default `quotas`. */
  name?: string;
  /** For every project without its own entry (and for dimensions its entry leaves out). */
  default?: QuotaLimits;
  projects?: Record<string, QuotaLimits>;
  timeoutMs?: number;
};

export const quotaKeys = {
  usage: (project: string) => ({ pk: `QUOTA#${project}`, sk: "QUOTA" }),
} as const;

/** A project's usage: what its VMs holding a home host were charged. */
export type QuotaUsageItem = {
  type: "quota";
  project: string;
  usedVms: number;
  usedVcpus: number;
  usedMemoryMiB: number;
  updatedAt: string;
};

export type Demand = { vms: number; vcpus: number; memoryMiB: number };

/** What a VM was charged, kept on the VM item while it holds its home host. */
export type QuotaCharge = Demand;

export const DIMENSIONS = [
  { key: "vms", used: "usedVms", unit: "VMs" },
  { key: "vcpus", used: "usedVcpus", unit: "vCPUs" },
  { key: "memoryMiB", used: "usedMemoryMiB", unit: "MiB of memory" },
] as const;

const chargeOf = (vm: VmItem): QuotaCharge | undefined =>
  (vm as VmItem & { quotaCharge?: QuotaCharge }).quotaCharge;

const add = (a: Demand, b: Demand): Demand => ({
  vms: a.vms + b.vms,
  vcpus: a.vcpus + b.vcpus,
  memoryMiB: a.memoryMiB + b.memoryMiB,
});

function checkLimits(where: string, limits: QuotaLimits | undefined): void {
  for (const [k, v] of Object.entries(limits ?? {})) {
    if (!DIMENSIONS.some((d) => d.key === k)) throw new Error(`quotas: ${where}: unknown limit ${k}`);
    if (v !== null && v !== undefined && !(Number.isSafeInteger(v) && v >= 0))
      throw new Error(`quotas: ${where}: ${k} must be a whole number >= 0 (or null for no limit)`);
  }
}

/** Sums what each VM of a batch is charged, by project. */
function byProject(vms: { vm: VmItem; demand: Demand }[]): Map<string, Demand> {
  const out = new Map<string, Demand>();
  for (const { vm, demand } of vms)
    out.set(vm.project, add(out.get(vm.project) ?? { vms: 0, vcpus: 0, memoryMiB: 0 }, demand));
  return out;
}

/** The limits that apply to a project, unlimited dimensions `null`. */
export type LimitsFor = (project: string) => Required<QuotaLimits>;

const policies = new WeakMap<Plugin, LimitsFor>();

/** The configured quotas plugin's limits (for `GET /v1/quotas`); undefined when the site runs none. */
export function quotaLimitsOf(deps: Pick<Deps, "plugins">): LimitsFor | undefined {
  for (const plugin of deps.plugins.list) {
    const limitsFor = policies.get(originOf(plugin));
    if (limitsFor) return limitsFor;
  }
  return undefined;
}

/** What a project's VMs hold now (zero before its first claim). */
export async function quotaUsage(deps: Deps, project: string): Promise<Demand> {
  const u = await getItem<QuotaUsageItem>(deps.db, quotaKeys.usage(project));
  return { vms: u?.usedVms ?? 0, vcpus: u?.usedVcpus ?? 0, memoryMiB: u?.usedMemoryMiB ?? 0 };
}

/** The quota plugin; limits are checked here, so a bad config stops start-up. */
export function quotas(options: QuotaOptions = {}): Plugin {
  checkLimits("default", options.default);
  for (const [p, l] of Object.entries(options.projects ?? {})) checkLimits(`project ${p}`, l);
  const name = options.name ?? "quotas";

  const limitsFor: LimitsFor = (project) => {
    const own = options.projects?.[project] ?? {};
    const pick = (k: keyof QuotaLimits) => (own[k] !== undefined ? own[k] : (options.default?.[k] ?? null));
    return { vms: pick("vms"), vcpus: pick("vcpus"), memoryMiB: pick("memoryMiB") };
  };

  const exceeded = (
    project: string,
    d: (typeof DIMENSIONS)[number],
    limit: number,
    used: number,
    asked: number,
  ) =>
    new UsherError(
      ErrorCode.quotaExceeded,
      `project ${project} would exceed its quota of ${limit} ${d.unit}: ${used} in use, ${asked} more asked`,
      { details: { plugin: name, project, dimension: d.key, limit, used, requested: asked } },
    );

  const request = (_ctx: unknown, req: ActionRequest): Verdict => {
    if (req.vm?.hostId) return undefined; // keeps its home host: charged already
    const limits = limitsFor(req.project);
    const demand: Demand = { vms: 1, vcpus: req.spec.vcpus, memoryMiB: req.spec.memoryMiB };
    for (const d of DIMENSIONS) {
      const limit = limits[d.key];
      if (limit === null || demand[d.key] <= limit) continue;
      return {
        veto: `this VM could never fit project ${req.project}'s quota of ${limit} ${d.unit} (it needs ${demand[d.key]})`,
        details: { reason: ErrorCode.quotaExceeded, dimension: d.key, limit, requested: demand[d.key] },
      };
    }
    return undefined;
  };

  const claim = async (ctx: { deps: Deps }, batch: ClaimBatch): Promise<Contribution | undefined> => {
    // A migration target's claim holds capacity for a while; the VM is charged once, for its home.
    if (batch.field !== "hostId") return undefined;
    const { deps } = ctx;
    const charged = batch.placements
      .filter(({ vm }) => !chargeOf(vm))
      .map(({ vm }) => ({ vm, demand: { vms: 1, vcpus: vm.spec.vcpus, memoryMiB: vm.spec.memoryMiB } }));
    if (!charged.length) return undefined;
    const now = deps.now().toISOString();
    const items: TxItem[] = [];
    // One update per project, a whole gang's demand at once (a transaction touches an item once).
    for (const [project, demand] of byProject(charged)) {
      const limits = limitsFor(project);
      const usage = await getItem<QuotaUsageItem>(deps.db, quotaKeys.usage(project));
      const conds: string[] = [];
      const names: Record<string, string> = {};
      const values: Record<string, unknown> = {};
      for (const d of DIMENSIONS) {
        const limit = limits[d.key];
        if (limit === null) continue;
        const used = usage?.[d.used] ?? 0;
        const max = limit - demand[d.key];
        if (used > max) throw exceeded(project, d, limit, used, demand[d.key]);
        conds.push(`(attribute_not_exists(#q_${d.key}) OR #q_${d.key} <= :q_${d.key})`);
        names[`#q_${d.key}`] = d.used;
        values[`:q_${d.key}`] = max;
      }
      items.push({
        // Within the limit after this claim, whatever other claims did since the read above.
        Update: updateOf(
          deps.db.table,
          quotaKeys.usage(project),
          {
            set: { type: "quota", project, updatedAt: now },
            inc: { usedVms: demand.vms, usedVcpus: demand.vcpus, usedMemoryMiB: demand.memoryMiB },
          },
          conds.length ? { expr: conds.join(" AND "), names, values } : undefined,
        ),
      });
    }
    return {
      items,
      vmSet: Object.fromEntries(charged.map(({ vm, demand }) => [vm.id, { quotaCharge: demand }])),
      // Another claim used the headroom first: the hook runs again on fresh usage, and fails with
      // `quota_exceeded` (naming the dimension, limit and usage) if it no longer fits.
      onConditionFailed: () => "retry",
    };
  };

  const release = (ctx: { deps: Deps }, batch: ReleaseBatch): Contribution | undefined => {
    const { deps } = ctx;
    const charged = batch.vms.flatMap((vm) => {
      // A VM moving to its migration's target stays charged there.
      const demand = movesHome(batch, vm) ? undefined : chargeOf(vm);
      return demand ? [{ vm, demand }] : [];
    });
    if (!charged.length) return undefined;
    const now = deps.now().toISOString();
    const items: TxItem[] = [...byProject(charged)].map(([project, d]) => ({
      // Unconditional: this joins the release of the VM's claim, whose own condition makes it happen once.
      Update: updateOf(deps.db.table, quotaKeys.usage(project), {
        set: { type: "quota", project, updatedAt: now },
        inc: { usedVms: -d.vms, usedVcpus: -d.vcpus, usedMemoryMiB: -d.memoryMiB },
      }),
    }));
    return { items, vmRemove: Object.fromEntries(charged.map(({ vm }) => [vm.id, ["quotaCharge"]])) };
  };

  const plugin: Plugin = {
    name,
    runsIn: "control-plane",
    ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
    hooks: { start_request: request, claim, release },
  };
  policies.set(plugin, limitsFor);
  return plugin;
}
