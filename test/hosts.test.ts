/**
 * Unregistering a host, against real DynamoDB Local: refused while it takes placements or holds a VM
 * (no VM is left pointing at a host that is gone), then removed with a `host.unregistered` event that
 * raises the `unregister` notification; the id can be registered again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Plugin } from "../shared/plugins/types.ts";
import { getHostItem, patchHost } from "../shared/services/hosts.ts";
import { unregisterHost } from "../shared/services/unregister-host.ts";
import { queryAll } from "../shared/store/base.ts";
import { keys } from "../shared/store/keys.ts";
import { act, addHost, complete, runningVm } from "./support/maintenance.ts";
import { type ServiceBed, startServiceBed } from "./support/services.ts";

let bed: ServiceBed;
const ctx = { actor: "root", requestId: "req-unreg" };
const listener: Plugin = { name: "listener", runsIn: "control-plane", hooks: { unregister: async () => {} } };

beforeAll(async () => {
  bed = await startServiceBed(["local", "u"]);
});
afterAll(() => bed?.stop());

describe("unregister a host", () => {
  it("only a host that is not enabled and holds no VM; the event notifies `unregister` plugins", async () => {
    const deps = bed.deps({ config: { plugins: [listener] } });
    await addHost(deps, "u", "u1");
    const vm = await runningVm(deps, "u", "un-1");
    expect(vm.hostId).toBe("u1");
    await expect(unregisterHost(deps, ctx, "u1")).rejects.toMatchObject({ code: "invalid_state" });
    await patchHost(deps, "root", "req", "u1", { state: "disabled" });
    await expect(unregisterHost(deps, ctx, "u1")).rejects.toMatchObject({
      code: "conflict",
      details: { vmIds: [vm.id] },
    });
    await complete(deps, await act(deps, vm.id, "delete"), { ok: true, powerState: "absent" });

    const res = await unregisterHost(deps, ctx, "u1");
    expect(res).toMatchObject({ status: 200, body: { id: "u1", state: "disabled" } });
    expect(await getHostItem(deps, "u1")).toBeUndefined();
    await expect(unregisterHost(deps, ctx, "u1")).rejects.toMatchObject({ code: "not_found" });
    const events = await queryAll<{ eventType: string; notify?: string[] }>(deps.db, {
      KeyConditionExpression: "pk = :pk AND begins_with(sk, :ev)",
      ExpressionAttributeValues: { ":pk": keys.host("u1").pk, ":ev": "EV#" },
    });
    expect(events.find((e) => e.eventType === "host.unregistered")?.notify).toEqual(["listener:unregister"]);

    // The id is free again.
    await addHost(deps, "u", "u1");
    expect((await getHostItem(deps, "u1"))?.state).toBe("enabled");
  });
});
