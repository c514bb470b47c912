/**
 * Virtual clusters (Usher's `start` of many VMs): N alike or a mix of member groups, created whole in
 * one transaction — every VM and its start operation, or nothing — and acted on as one.
 */

import type { z } from "zod";
import { isAdmin, type Principal } from "../auth/principal.ts";
import {
  type Cluster,
  type ClusterActionRequest,
  type ClusterMember,
  type CreateCluster,
  MAX_CLUSTER_VMS,
} from "../contracts/cluster.ts";
import { type Placement, type Vm, VmSpec } from "../contracts/vm.ts";
import { ConflictError, ErrorCode, NotFoundError, ValidationError } from "../errors.ts";
import { newId } from "../ids.ts";
import { sitePolicies } from "../scheduler/site-policies.ts";
import { getItem, notExists, type Page, putOf, queryAll, queryPage, transact } from "../store/base.ts";
import { failedConditions } from "../store/errors.ts";
import { type ClusterItem, clusterView, type OpItem, opView, type VmItem, vmView } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";
import { eventItem } from "./events.ts";
import { idempotent, type StoredResponse } from "./idempotency.ts";
import { enqueueOps } from "./operations.ts";
import { newVmItems, type RequestContext, requestAction } from "./vms.ts";

/**
 * DynamoDB transactions hold 100 items, and two transactions carry a whole cluster:
 * - creation: name reservation, cluster, event, idempotency record (4) + per VM its name, record and
 *   start operation (3): 3N + 4 ≤ 100, so N ≤ 32;
 * - gang placement (gang.ts): cluster update and event (2) + per VM a claim and a VM update (2N) + one
 *   update per host used (at most N) + plugins' claim contributions (assumed at most one item per VM
 *   plus two, e.g. an address per VM and a project quota): 2 + 2N + N + N + 2 = 4N + 4 ≤ 100, so N ≤ 24.
 */
export { MAX_CLUSTER_VMS };

export type Member = { role: string; spec: VmSpec; labels: Record<string, string>; placement?: Placement };

/** What `expand` reads of a cluster request (a dry run's has no name). */
type Members =
  | { labels?: Record<string, string> | undefined; members: ClusterMember[] }
  | (VmSpec & {
      count: number;
      labels?: Record<string, string> | undefined;
      placement?: Placement | undefined;
    });

/** A cluster request's members, one per VM, in naming order (`<role>-<n>`). */
export function expand(body: Members): Member[] {
  if ("members" in body) {
    return body.members.flatMap(({ count, role, labels, placement, ...spec }) =>
      Array.from({ length: count }, () => ({
        role: role ?? "node",
        spec,
        labels: { ...(body.labels ?? {}), ...(labels ?? {}) },
        ...(placement ? { placement } : {}),
      })),
    );
  }
  const { count, labels, placement } = body;
  const spec = specOf(body);
  return Array.from({ length: count }, () => ({
    role: "node",
    spec,
    labels: labels ?? {},
    ...(placement ? { placement } : {}),
  }));
}

/** The spec's own fields of a request that has others too (name, site, policy, placement). */
export function specOf(body: VmSpec): VmSpec {
  return Object.fromEntries(Object.entries(body).filter(([k]) => Object.hasOwn(VmSpec.shape, k))) as VmSpec;
}

/** Refuses (400) a policy the site does not define, built-in or configured. */
export function checkPolicyName(deps: Deps, name: string | undefined): void {
  if (name !== undefined && !sitePolicies(deps.plugins.config).has(name))
    throw new ValidationError(`unknown scheduler policy ${name}`, {
      known: [...sitePolicies(deps.plugins.config).policies.keys()],
    });
}

export async function createCluster(
  deps: Deps,
  ctx: RequestContext,
  body: CreateCluster,
): Promise<StoredResponse> {
  const members = expand(body);
  if (members.length > MAX_CLUSTER_VMS)
    throw new ValidationError(`a cluster holds at most ${MAX_CLUSTER_VMS} VMs per request`);
  checkPolicyName(deps, body.policy);
  const site = body.site ?? deps.config.defaultSite;
  return idempotent(deps, ctx.idempotency, async (record) => {
    const cluster: ClusterItem = {
      type: "cluster",
      id: newId("cl"),
      name: body.name,
      project: ctx.principal.project,
      owner: ctx.principal.subject,
      site,
      vmIds: [],
      ...(body.policy ? { policy: body.policy } : {}),
      createdAt: deps.now().toISOString(),
    };
    const perRole = new Map<string, number>();
    const made: ReturnType<typeof newVmItems>[] = [];
    for (const m of members) {
      const n = (perRole.get(m.role) ?? 0) + 1;
      perRole.set(m.role, n);
      const name = `${body.name}-${m.role}-${n}`;
      // Site policy per member, before anything is written: one veto refuses the whole cluster.
      const { spec, args } = await deps.plugins.beforeAction(deps, {
        action: "start",
        principal: ctx.principal,
        requestId: ctx.requestId,
        project: ctx.principal.project,
        site,
        spec: m.spec,
        // A lease is asked for per cluster: every member's start carries it (leases plugin).
        args: body.leaseSeconds === undefined ? {} : { leaseSeconds: body.leaseSeconds },
        create: { name, clusterId: cluster.id, labels: m.labels },
      });
      made.push(
        newVmItems(deps, ctx, {
          name,
          site,
          spec,
          labels: m.labels,
          placement: m.placement,
          clusterId: cluster.id,
          args,
        }),
      );
    }
    cluster.vmIds = made.map((m) => m.vm.id);
    // The members' first starts are placed together by whichever scheduler handles one first.
    cluster.gang = { status: "pending", ops: Object.fromEntries(made.map((m) => [m.vm.id, m.op.id])) };
    const response = {
      status: 202,
      body: {
        cluster: clusterView(cluster),
        vms: made.map((m) => vmView(m.vm)),
        operations: made.map((m) => opView(m.op)),
      },
    };
    try {
      await transact(deps.db, [
        // Cluster names are unique per project.
        {
          Put: putOf(
            deps.db.table,
            {
              ...keys.clusterName(cluster.project, cluster.name),
              type: "clustername",
              clusterId: cluster.id,
            },
            notExists,
          ),
        },
        {
          Put: putOf(
            deps.db.table,
            { ...cluster, ...keys.cluster(cluster.id), ...keys.clusterIndex(cluster.project, cluster.id) },
            notExists,
          ),
        },
        eventItem(deps, {
          subjectPk: keys.cluster(cluster.id).pk,
          project: cluster.project,
          type: "cluster.created",
          requestId: ctx.requestId,
          actor: ctx.principal.subject,
          data: { vms: cluster.vmIds.length },
        }),
        ...made.flatMap((m) => m.items),
        ...record(response),
      ]);
    } catch (err) {
      const failed = failedConditions(err);
      if (failed?.includes(0))
        throw new ConflictError(
          ErrorCode.nameTaken,
          `a cluster named ${body.name} already exists in this project`,
        );
      if (failed?.some((i) => i >= 3 && i < 3 + 3 * made.length && (i - 3) % 3 === 0)) {
        throw new ConflictError(
          ErrorCode.nameTaken,
          `a VM named like this cluster's members (${body.name}-…) already exists`,
        );
      }
      throw err;
    }
    await enqueueOps(
      deps,
      made.map((m) => m.op),
    );
    return response;
  });
}

async function getVisibleCluster(deps: Deps, principal: Principal, id: string): Promise<ClusterItem> {
  const c = await getItem<ClusterItem>(deps.db, keys.cluster(id));
  if (!c || (c.project !== principal.project && !isAdmin(principal))) throw new NotFoundError("cluster", id);
  return c;
}

async function clusterVms(deps: Deps, id: string): Promise<VmItem[]> {
  return queryAll<VmItem>(deps.db, {
    IndexName: "gsi2",
    KeyConditionExpression: "gsi2pk = :pk",
    ExpressionAttributeValues: { ":pk": keys.vmClusterIndex(id, "").gsi2pk },
  });
}

/** A cluster with its current VMs (deleted VMs drop out of `vmIds`). */
export async function getCluster(
  deps: Deps,
  principal: Principal,
  id: string,
): Promise<Cluster & { vms: Vm[] }> {
  const c = await getVisibleCluster(deps, principal, id);
  const vms = (await clusterVms(deps, id)).map(vmView);
  return { ...clusterView(c), vmIds: vms.map((v) => v.id), vms };
}

export async function listClusters(
  deps: Deps,
  principal: Principal,
  page: { limit: number; cursor?: string | undefined },
): Promise<Page<Cluster>> {
  const out = await queryPage<ClusterItem>(
    deps.db,
    {
      IndexName: "gsi1",
      KeyConditionExpression: "gsi1pk = :pk",
      ExpressionAttributeValues: { ":pk": keys.clusterIndex(principal.project, "").gsi1pk },
    },
    page,
  );
  return { items: out.items.map(clusterView), nextCursor: out.nextCursor };
}

/**
 * One action on every VM of the cluster, each as its own operation. With an Idempotency-Key, each
 * VM's submission is keyed too, so a retried request never submits twice for any VM.
 */
export async function clusterAction(
  deps: Deps,
  ctx: RequestContext,
  id: string,
  req: z.infer<typeof ClusterActionRequest>,
): Promise<StoredResponse> {
  await getVisibleCluster(deps, ctx.principal, id);
  return idempotent(deps, ctx.idempotency, async (record) => {
    const vms = await clusterVms(deps, id);
    const operations = [];
    for (const vm of vms) {
      const perVm = ctx.idempotency
        ? { ...ctx.idempotency, key: `${ctx.idempotency.key}#${vm.id}` }
        : undefined;
      // Each VM decides in turn: one that cannot take the action gets a failed `invalid_state` operation.
      const out = await requestAction(deps, { ...ctx, idempotency: perVm }, vm.id, req, {
        deferStateCheck: true,
      });
      operations.push((out.body as { operation: OpItem }).operation);
    }
    const response = { status: 202, body: { operations } };
    const rec = record(response);
    if (rec.length) await transact(deps.db, rec);
    return response;
  });
}
