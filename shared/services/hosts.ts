/** Host registry (admin): register, update, list. Capacity counters are kept consistent with claims. */
import type { CreateHost, Host, PatchHost } from "../contracts/host.ts";
import { ConflictError, ErrorCode, NotFoundError } from "../errors.ts";
import {
  getItem,
  notExists,
  type Page,
  putOf,
  queryAll,
  queryPage,
  transact,
  updateOf,
} from "../store/base.ts";
import { failedConditions, isTransactionConflict } from "../store/errors.ts";
import { type HostItem, hostView, limitsOf } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";
import { eventItem } from "./events.ts";
import { type IdempotencyRequest, idempotent, type StoredResponse } from "./idempotency.ts";

/** Registers a host (admin). With an Idempotency-Key, a retry replays the first answer. */
export async function createHost(
  deps: Deps,
  ctx: { actor: string; requestId: string; idempotency?: IdempotencyRequest | undefined },
  body: CreateHost,
): Promise<StoredResponse & { replayed: boolean }> {
  return idempotent(deps, ctx.idempotency, async (record) => {
    const host = newHost(deps, body);
    const response = { status: 201, body: hostView(host) };
    try {
      await transact(deps.db, [
        // Host ids are unique: registering an existing id is a conflict, never an overwrite of its counters.
        {
          Put: putOf(
            deps.db.table,
            { ...host, ...keys.host(host.id), ...keys.hostIndex(host.site, host.id) },
            notExists,
          ),
        },
        eventItem(deps, {
          subjectPk: keys.host(host.id).pk,
          type: "host.registered",
          requestId: ctx.requestId,
          actor: ctx.actor,
          data: { site: host.site, kind: host.kind },
        }),
        ...record(response),
      ]);
    } catch (err) {
      if (failedConditions(err)?.includes(0))
        throw new ConflictError(ErrorCode.conflict, `host ${host.id} already exists`);
      throw err;
    }
    return response;
  });
}

/** The record of a newly registered host: limits from capacity and ratios, everything free. */
export function newHost(deps: Deps, body: CreateHost): HostItem {
  const now = deps.now().toISOString();
  const ratios = { cpu: body.ratios?.cpu ?? 1, memory: body.ratios?.memory ?? 1 };
  const limits = limitsOf(body.capacity, ratios);
  return {
    type: "host",
    id: body.id,
    site: body.site,
    kind: body.kind,
    address: body.address,
    capacity: body.capacity,
    ratios,
    ...limits,
    freeVcpus: limits.limitVcpus,
    freeMemoryMiB: limits.limitMemoryMiB,
    freeDevices: { ...limits.limitDevices },
    labels: body.labels ?? {},
    state: body.state ?? "enabled",
    version: 1,
    createdAt: now,
    updatedAt: now,
  };
}

export async function getHostItem(deps: Deps, id: string, consistent = true): Promise<HostItem | undefined> {
  return getItem<HostItem>(deps.db, keys.host(id), consistent);
}

export async function getHost(deps: Deps, id: string): Promise<Host> {
  const host = await getHostItem(deps, id);
  if (!host) throw new NotFoundError("host", id);
  return hostView(host);
}

export async function listHosts(
  deps: Deps,
  site: string | undefined,
  page: { limit: number; cursor?: string | undefined },
): Promise<Page<Host>> {
  const out = await queryPage<HostItem>(
    deps.db,
    {
      IndexName: "gsi1",
      KeyConditionExpression: site ? "gsi1pk = :pk AND begins_with(gsi1sk, :site)" : "gsi1pk = :pk",
      ExpressionAttributeValues: { ":pk": "HOSTS", ...(site ? { ":site": `${site}#` } : {}) },
    },
    page,
  );
  return { items: out.items.map(hostView), nextCursor: out.nextCursor };
}

/** Every host of a site (the scheduler's snapshot). Read from the index: eventually consistent. */
export async function siteHosts(deps: Deps, site: string): Promise<HostItem[]> {
  return queryAll<HostItem>(deps.db, {
    IndexName: "gsi1",
    KeyConditionExpression: "gsi1pk = :pk AND begins_with(gsi1sk, :site)",
    ExpressionAttributeValues: { ":pk": "HOSTS", ":site": `${site}#` },
  });
}

/**
 * Changes a host. New capacity or ratios move the limits, and the free counters by the same amount;
 * a change that would leave less than is already claimed is refused.
 */
export async function patchHost(
  deps: Deps,
  actor: string,
  requestId: string,
  id: string,
  patch: PatchHost,
): Promise<Host> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const host = await getHostItem(deps, id);
    if (!host) throw new NotFoundError("host", id);
    const newState = patch.state && patch.state !== host.state ? patch.state : undefined;
    if (newState) checkManualStateChange(host);
    const capacity = patch.capacity ?? host.capacity;
    const ratios = { ...host.ratios, ...(patch.ratios ?? {}) };
    const limits = limitsOf(capacity, ratios);
    const freeDevices: Record<string, number> = {};
    for (const model of new Set([...Object.keys(limits.limitDevices), ...Object.keys(host.limitDevices)])) {
      freeDevices[model] =
        (limits.limitDevices[model] ?? 0) -
        ((host.limitDevices[model] ?? 0) - (host.freeDevices[model] ?? 0));
    }
    const next = {
      ...limits,
      freeVcpus: host.freeVcpus + (limits.limitVcpus - host.limitVcpus),
      freeMemoryMiB: host.freeMemoryMiB + (limits.limitMemoryMiB - host.limitMemoryMiB),
      freeDevices,
    };
    if (next.freeVcpus < 0 || next.freeMemoryMiB < 0 || Object.values(freeDevices).some((n) => n < 0)) {
      throw new ConflictError(
        ErrorCode.conflict,
        "new capacity is below what is already allocated on this host",
      );
    }
    const set = {
      ...next,
      capacity,
      ratios,
      ...(patch.state ? { state: patch.state } : {}),
      ...(patch.labels ? { labels: patch.labels } : {}),
      ...(patch.address ? { address: patch.address } : {}),
      version: host.version + 1,
      settingsVersion: (host.settingsVersion ?? 0) + 1,
      updatedAt: deps.now().toISOString(),
    };
    try {
      await transact(deps.db, [
        // Optimistic: the free counters were computed from this version; a claim in between retries.
        {
          Update: updateOf(
            deps.db.table,
            keys.host(id),
            // A state set by hand ends a drain or a finished evacuation (the events keep their history).
            { set, remove: newState ? ["drain", "evacuation"] : [] },
            // With a new state, also from the state read (maintenance moves state without a version).
            newState
              ? {
                  expr: "#ver = :v AND #state = :from",
                  names: { "#ver": "version", "#state": "state" },
                  values: { ":v": host.version, ":from": host.state },
                }
              : { expr: "#ver = :v", names: { "#ver": "version" }, values: { ":v": host.version } },
          ),
        },
        eventItem(deps, {
          subjectPk: keys.host(id).pk,
          type: "host.updated",
          requestId,
          actor,
          data: { patch },
        }),
      ]);
      return hostView({ ...host, ...set });
    } catch (err) {
      // Changed since we read it (a claim, a release, another change): read again and retry.
      if (failedConditions(err)?.includes(0) || isTransactionConflict(err)) continue;
      throw err;
    }
  }
  throw new ConflictError(ErrorCode.conflict, `host ${id} is changing too often; try again`);
}

/**
 * Refuses an admin's state change (enable, PATCH state) that would cut a fence or an evacuation
 * short: the fence's outcome must be recorded, and restarts must not race a host coming back.
 */
export function checkManualStateChange(host: HostItem): void {
  const ev = host.evacuation?.status;
  if (host.state === "fencing" || (host.state === "fenced" && ev === "evacuating")) {
    throw new ConflictError(
      ErrorCode.invalidState,
      host.state === "fencing"
        ? `host ${host.id} is being fenced; wait for the fence's outcome`
        : `host ${host.id} is being evacuated; wait until its VMs are moved`,
      { details: { state: host.state, evacuation: ev ?? null } },
    );
  }
}
