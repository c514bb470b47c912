/**
 * What a placement decides over: a snapshot of a site's hosts (with who is where, when a decision
 * needs it), each VM's demand, and the policy that applies. Shared by single placement (`place.ts`),
 * gangs (`gang.ts`) and dry runs (`dry-run.ts`).
 */
import type { HypervisorKind } from "../contracts/common.ts";
import type { Placement, VmSpec } from "../contracts/vm.ts";
import type { Policy } from "../scheduler/policy.ts";
import type { Registry } from "../scheduler/registry.ts";
import { sitePolicies } from "../scheduler/site-policies.ts";
import { Snapshot } from "../scheduler/snapshot.ts";
import type { Demand, HostSnapshot } from "../scheduler/types.ts";
import { queryAll } from "../store/base.ts";
import type { HostItem, OpItem, VmItem } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";
import { placementHosts } from "./host-cache.ts";
import { getHostItem } from "./hosts.ts";
import { getVmItem } from "./vms.ts";

/**
 * The hosts an operation may be placed on, when site policy narrowed them (the argument policy's
 * `allowed.hosts`, recorded in the operation's arguments as `allowedHosts`); undefined for any.
 */
export function allowedHostsOf(op: Pick<OpItem, "args">): ReadonlySet<string> | undefined {
  const list = op.args.allowedHosts;
  return Array.isArray(list) ? new Set(list.filter((h): h is string => typeof h === "string")) : undefined;
}

/** A group as the scheduler sees it: the project's own (names cannot hold `#`, so none collide). */
export const scopedGroup = (project: string, group: string | undefined): string | undefined =>
  group === undefined ? undefined : `${project}#${group}`;

/** What one VM asks of a host: its spec's amounts and its placement constraints, groups scoped. */
export function demandOf(
  vm: { id?: string | undefined; project: string; spec: VmSpec; placement?: Placement | undefined },
  hypervisor?: HypervisorKind,
): Demand {
  const p = vm.placement ?? {};
  return {
    vcpus: vm.spec.vcpus,
    memoryMiB: vm.spec.memoryMiB,
    devices: vm.spec.devices ?? {},
    hypervisor: hypervisor ?? vm.spec.hypervisor,
    requiredLabels: p.requiredLabels,
    vmId: vm.id,
    affinityGroup: scopedGroup(vm.project, p.affinityGroup),
    antiAffinityGroup: scopedGroup(vm.project, p.antiAffinityGroup),
    softAffinityGroup: scopedGroup(vm.project, p.softAffinityGroup),
    sameHostAs: p.sameHostAs,
    differentHostFrom: p.differentHostFrom,
  };
}

const hasGroup = (d: Demand) =>
  d.affinityGroup !== undefined || d.antiAffinityGroup !== undefined || d.softAffinityGroup !== undefined;

/** A site's hosts as the scheduler sees them, with the stored items by id (for the claim). */
export type SiteSnapshot = {
  snapshot: Snapshot;
  hosts: Map<string, HostItem>;
  /** Read from DynamoDB for this decision, not through the host cache: "nothing fits" is then true. */
  fresh: boolean;
};

type Placed = Pick<VmItem, "id" | "project" | "hostId" | "migrationHostId" | "placement">;

/**
 * The project's VMs that hold a host: every one when a demand names a group (one query of the
 * project's VMs), else only those named by id (read one by one, consistently). VMs of other projects
 * never count, so a project learns nothing of where another's VMs are.
 */
async function placedVms(deps: Deps, project: string, demands: readonly Demand[]): Promise<Placed[]> {
  if (demands.some(hasGroup)) {
    return queryAll<Placed>(deps.db, {
      IndexName: "gsi1",
      KeyConditionExpression: "gsi1pk = :pk",
      FilterExpression: "attribute_exists(#h) OR attribute_exists(#m)",
      ProjectionExpression: "#id, #project, #h, #m, #placement",
      ExpressionAttributeNames: {
        "#id": "id",
        "#project": "project",
        "#h": "hostId",
        "#m": "migrationHostId",
        "#placement": "placement",
      },
      ExpressionAttributeValues: { ":pk": keys.vmIndex(project, "").gsi1pk },
    });
  }
  const ids = [...new Set(demands.flatMap((d) => [...(d.sameHostAs ?? []), ...(d.differentHostFrom ?? [])]))];
  const vms = await Promise.all(ids.map((id) => getVmItem(deps, id)));
  return vms.filter((vm): vm is VmItem => vm?.project === project);
}

/**
 * A snapshot of the site's hosts that `keep` accepts. When a demand relates to other VMs (groups,
 * VM ids), each host also carries the project's VMs on it and their groups, `except` the VMs being
 * placed. Host counters come from the index (eventually consistent): a stale one shows up as a
 * failed claim condition, and `refreshHost` fixes it.
 */
export async function loadSnapshot(
  deps: Deps,
  site: string,
  opts: {
    project: string;
    demands: readonly Demand[];
    except?: ReadonlySet<string> | undefined;
    keep?: ((host: HostItem) => boolean) | undefined;
    /** Read the site now rather than through the process's host cache (for a "nothing fits"). */
    fresh?: boolean | undefined;
  },
): Promise<SiteSnapshot> {
  const fresh = opts.fresh === true || !deps.hostCache;
  const all = await placementHosts(deps, site, { fresh });
  const items = opts.keep ? all.filter(opts.keep) : all;
  const relates = opts.demands.some(
    (d) => hasGroup(d) || d.sameHostAs?.length || d.differentHostFrom?.length,
  );
  // Who is where, only when a demand relates to other VMs (most do not).
  const vmIds = new Map<string, string[]>();
  const groups = new Map<string, string[]>();
  if (relates) {
    for (const h of items) {
      vmIds.set(h.id, []);
      groups.set(h.id, []);
    }
    for (const vm of await placedVms(deps, opts.project, opts.demands)) {
      if (opts.except?.has(vm.id)) continue;
      const p = vm.placement ?? {};
      // One entry per group field, as `Snapshot.apply` records a placed demand.
      const mine = [p.affinityGroup, p.antiAffinityGroup, p.softAffinityGroup].flatMap((g) =>
        g === undefined ? [] : [scopedGroup(vm.project, g)!],
      );
      // A migrating VM holds both hosts until it finishes: it counts on each.
      for (const hostId of new Set([vm.hostId, vm.migrationHostId])) {
        if (hostId === undefined || !vmIds.has(hostId)) continue;
        vmIds.get(hostId)!.push(vm.id);
        groups.get(hostId)!.push(...mine);
      }
    }
  }
  const snapshot = new Snapshot(items.map((h) => snapshotHost(h, vmIds.get(h.id), groups.get(h.id))));
  return { snapshot, hosts: new Map(items.map((h) => [h.id, h])), fresh };
}

/**
 * A host as placement sees it: the fields of its record the pipeline reads, with the load its agent
 * last reported. A new object of one shape, not a spread of the record: a placement builds 1,000 of
 * these, and copying every field of a store item is what cost the most. Without `vmIds` and `groups`
 * an upsert keeps the members the snapshot had.
 */
function snapshotHost(h: HostItem, vmIds?: string[], groups?: string[]): HostSnapshot {
  return {
    id: h.id,
    kind: h.kind,
    state: h.state,
    labels: h.labels,
    limitVcpus: h.limitVcpus,
    limitMemoryMiB: h.limitMemoryMiB,
    limitDevices: h.limitDevices,
    freeVcpus: h.freeVcpus,
    freeMemoryMiB: h.freeMemoryMiB,
    freeDevices: h.freeDevices,
    load: h.inventory?.load,
    vmIds,
    groups,
  };
}

/**
 * Re-reads one host after a claim on it failed (consistently: the index may lag) and puts it in the
 * snapshot, keeping who is where; a host gone, moved to another site or no longer kept leaves it.
 */
export async function refreshHost(
  deps: Deps,
  site: string,
  s: SiteSnapshot,
  hostId: string,
  keep?: (host: HostItem) => boolean,
): Promise<void> {
  const fresh = await getHostItem(deps, hostId);
  deps.hostCache?.put(site, hostId, fresh);
  if (fresh && fresh.site === site && (!keep || keep(fresh))) {
    s.snapshot.upsert(snapshotHost(fresh));
    s.hosts.set(hostId, fresh);
  } else {
    s.snapshot.remove(hostId);
    s.hosts.delete(hostId);
  }
}

/** The policy for a VM: its cluster's, else its project's, else the site's default, else `pack`. */
export function policyFor(
  deps: Deps,
  choice: { cluster?: string | undefined; project: string },
): { name: string; policy: Policy; registry: Registry } {
  const site = sitePolicies(deps.plugins.config);
  return { ...site.choose(choice), registry: site.registry };
}
