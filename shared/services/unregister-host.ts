/**
 * Unregistering a host (admin, `DELETE /v1/hosts/{id}`): only a host that takes no placements and
 * holds no capacity claim, so no VM is ever left pointing at a host that is gone. Disable or drain it
 * first (a failed one: evacuate it). Its events stay in the log; `host.unregistered` raises the
 * `unregister` notification.
 */
import type { Host } from "../contracts/host.ts";
import { ConflictError, ErrorCode, NotFoundError } from "../errors.ts";
import { deleteOf, transact } from "../store/base.ts";
import { failedConditions } from "../store/errors.ts";
import { hostView } from "../store/items.ts";
import { keys } from "../store/keys.ts";
import type { Deps } from "./context.ts";
import { eventItem } from "./events.ts";
import { hostClaims } from "./host-records.ts";
import { checkManualStateChange, getHostItem } from "./hosts.ts";
import { type IdempotencyRequest, idempotent, type StoredResponse } from "./idempotency.ts";

export async function unregisterHost(
  deps: Deps,
  ctx: { actor: string; requestId: string; idempotency?: IdempotencyRequest | undefined },
  id: string,
): Promise<StoredResponse & { replayed: boolean }> {
  return idempotent(deps, ctx.idempotency, async (record) => {
    const host = await getHostItem(deps, id);
    if (!host) throw new NotFoundError("host", id);
    checkManualStateChange(host); // not while a fence or an evacuation is under way
    if (host.state === "enabled") {
      throw new ConflictError(
        ErrorCode.invalidState,
        `host ${id} is enabled: disable or drain it before unregistering it`,
        { details: { state: host.state } },
      );
    }
    // Claims appear only on an enabled host (the claim's condition), so none can be added once this
    // strongly consistent read of a host that is not enabled finds none.
    const claims = await hostClaims(deps, id);
    if (claims.length > 0) {
      throw new ConflictError(
        ErrorCode.conflict,
        `host ${id} still holds ${claims.length} VM(s): drain or evacuate it first`,
        { details: { vmIds: claims.map((c) => c.vmId) } },
      );
    }
    const view: Host = hostView(host);
    const response = { status: 200, body: view };
    try {
      await transact(deps.db, [
        {
          // The host as read: not enabled again, nothing claimed since (claims change the version).
          Delete: deleteOf(deps.db.table, keys.host(id), {
            expr: "#ver = :v AND #state = :s",
            names: { "#ver": "version", "#state": "state" },
            values: { ":v": host.version, ":s": host.state },
          }),
        },
        eventItem(deps, {
          subjectPk: keys.host(id).pk,
          type: "host.unregistered",
          requestId: ctx.requestId,
          actor: ctx.actor,
          data: { site: host.site, kind: host.kind, address: host.address },
        }),
        ...record(response),
      ]);
    } catch (err) {
      if (failedConditions(err)?.includes(0))
        throw new ConflictError(ErrorCode.conflict, `host ${id} changed meanwhile; try again`);
      throw err;
    }
    deps.log.warn("host unregistered", { hostId: id, requestId: ctx.requestId, actor: ctx.actor });
    return response;
  });
}
