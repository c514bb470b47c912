/**
 * DNS (Usher's udns), control-plane half: A and PTR records for each VM with an address, kept by the
 * site's bridge agent, which alone reaches the site's nameserver (bridge-agent/plugins/dns/). When a
 * VM's start succeeds this sends the agent a signed `dns` task to add its records; when it gives up
 * its home host, and its address with it (`vm_released`: destroy, delete, a failed start, drift, an
 * evacuation), one to remove them. The names, zones and TSIG key are the agent's settings.
 *
 * A notice is delivered at least once and its task may run more than once: both tasks are idempotent
 * on the agent. A start is checked against the VM as it is now (a notice delivered late, after the VM
 * was destroyed, adds nothing); a removal uses the VM as the event recorded it, since its address is
 * released in the same transaction (`data.vm`, see shared/services/finish.ts).
 */
import { DNS_PLUGIN, type DnsTaskEvent, DnsTaskPayload } from "../../contracts/dns.ts";
import { sendTask } from "../../services/tasks.ts";
import { getVmItem } from "../../services/vms.ts";
import type { VmItem } from "../../store/items.ts";
import type { Notice, Plugin, PluginContext } from "../types.ts";

export type DnsOptions = {
  /** Time limit of one hook call (a DynamoDB read and an SQS send), ms; default 5000. */
  timeoutMs?: number;
};

/** What a task needs to know of a VM, and the site whose agent gets it. */
export type DnsTarget = { site: string; hostId?: string | undefined; payload: DnsTaskPayload };

/** The VM id a notice is about (`VM#<id>`), if it is about a VM. */
export function vmIdOf(notice: Pick<Notice, "subject">): string | undefined {
  return notice.subject.startsWith("VM#") ? notice.subject.slice(3) : undefined;
}

/** A started VM's records: from the VM as it is now; undefined when it holds no address (or is gone). */
export function startTarget(vm: VmItem | undefined): DnsTarget | undefined {
  if (!vm?.network) return undefined;
  const payload = DnsTaskPayload.safeParse({
    vmId: vm.id,
    name: vm.name,
    project: vm.project,
    address: vm.network.address,
  });
  return payload.success ? { site: vm.site, hostId: vm.hostId, payload: payload.data } : undefined;
}

/** A released VM's records: from the event's `data.vm`; undefined when it had no address. */
export function removalTarget(notice: Notice): DnsTarget | undefined {
  const vmId = vmIdOf(notice);
  const vm = notice.data.vm as
    | { name?: unknown; site?: unknown; network?: { address?: unknown } }
    | undefined;
  if (!vmId || !vm || typeof vm.site !== "string") return undefined;
  const payload = DnsTaskPayload.safeParse({
    vmId,
    name: vm.name,
    project: notice.project,
    address: vm.network?.address,
  });
  return payload.success ? { site: vm.site, payload: payload.data } : undefined;
}

async function send(ctx: PluginContext, notice: Notice, event: DnsTaskEvent, target: DnsTarget) {
  // A throw (SQS refused) leaves the notice in the outbox, which delivers it again later.
  await sendTask(ctx.deps, {
    kind: "plugin",
    plugin: DNS_PLUGIN,
    event,
    site: target.site,
    requestId: notice.requestId,
    hostId: target.hostId,
    payload: target.payload,
  });
}

/** The DNS plugin (`runsIn: "agent"`): its hooks here only send signed tasks to the VM's site agent. */
export function dns(options: DnsOptions = {}): Plugin {
  const timeoutMs = options.timeoutMs ?? 5000;
  if (!(timeoutMs > 0 && timeoutMs <= 60_000)) throw new Error("dns: timeoutMs must be in (0, 60000]");

  const start = async (ctx: PluginContext, notice: Notice) => {
    const vmId = vmIdOf(notice);
    const target = vmId ? startTarget(await getVmItem(ctx.deps, vmId)) : undefined;
    if (!target) {
      ctx.log.debug("no address to register", { vmId, eventId: notice.eventId });
      return;
    }
    await send(ctx, notice, "start", target);
  };

  const remove = async (ctx: PluginContext, notice: Notice) => {
    const target = removalTarget(notice);
    if (!target) {
      ctx.log.debug("no address to remove", { subject: notice.subject, eventId: notice.eventId });
      return;
    }
    await send(ctx, notice, notice.data.action === "delete" ? "delete" : "destroy", target);
  };

  return {
    name: DNS_PLUGIN,
    runsIn: "agent",
    timeoutMs,
    hooks: { start, vm_released: remove },
  };
}
