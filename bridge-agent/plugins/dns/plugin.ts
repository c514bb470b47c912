/**
 * DNS (Usher's udns), agent half: runs `dns` tasks from the control plane (shared/plugins/builtin/dns.ts)
 * against the site's nameserver, with the agent's `dns` settings (the TSIG key never leaves the site).
 * `start` adds (replaces) a VM's A and PTR records; `destroy` and `delete` remove exactly them.
 *
 * Names: `<vm-name>.<project>.<zone>`. VM names are DNS labels already and unique within a project;
 * a project that is not a lower-case DNS label is made into one (see `projectLabel`).
 *
 * Both directions are idempotent (a redelivered task replaces the RRsets again, or deletes what is
 * already gone), so SQS redelivery after a failure or a crash is safe. Errors carry stable codes:
 * the update client's `dns_*` codes (errors.ts), and `plugin_unconfigured` / `dns_bad_task` here.
 */
import { createHash } from "node:crypto";
import { DNS_PLUGIN, DnsTaskEvent, DnsTaskPayload } from "../../../shared/contracts/dns.ts";
import type { AgentPlugin, TaskHandler } from "../../tasks/types.ts";
import type { DnsPluginConfig } from "./config.ts";
import { fqdn, hostLabel, ipv4Octets, reverseName, zoneName } from "./names.ts";
import { createDnsUpdater, type DnsUpdater, type VmRecords } from "./update.ts";

/** Codes of failures before any update is sent (the update client's own are in errors.ts). */
export const DnsTaskErrorCode = {
  /** The agent has no `dns` section: the site's config enables the plugin, this agent cannot run it. */
  unconfigured: "plugin_unconfigured",
  /** The task's event or payload is not one this plugin knows (a control plane of another version). */
  badTask: "dns_bad_task",
} as const;
export type DnsTaskErrorCode = (typeof DnsTaskErrorCode)[keyof typeof DnsTaskErrorCode];

export class DnsTaskError extends Error {
  override name = "DnsTaskError";
  readonly code: DnsTaskErrorCode;
  constructor(code: DnsTaskErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** The longest readable part of a project label that needed changing (63 minus `-` and 8 hex). */
const READABLE = 54;
const HOST_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * A project as one DNS label. A project that is one already (lower case) is used as it is; any other
 * is lower-cased, each run of other characters becomes '-', and 8 hex digits of its SHA-256 are
 * appended, so `Team A` and `team-a` never share names (`team-a-3f2c…` and `team-a`).
 */
export function projectLabel(project: string): string {
  if (HOST_LABEL.test(project)) return project;
  const hash = createHash("sha256").update(project, "utf8").digest("hex").slice(0, 8);
  const readable = project
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .slice(0, READABLE)
    .replace(/^-+|-+$/g, "");
  return readable ? `${readable}-${hash}` : `p-${hash}`;
}

/** The records a task is about: what the update client gets. Throws DnsError for a bad name. */
export function vmRecords(cfg: DnsPluginConfig, p: DnsTaskPayload): VmRecords & { ttl: number } {
  return {
    zone: cfg.zone,
    reverseZone: cfg.reverseZone,
    name: p.name,
    subdomain: projectLabel(p.project),
    ipv4: p.address,
    ttl: cfg.ttlSeconds,
  };
}

/** The A record's name and the PTR record's name of these records, as the server will hold them. */
export function recordNames(r: VmRecords): { host: string; ptr: string } {
  const label =
    r.subdomain === undefined ? hostLabel(r.name) : `${hostLabel(r.name)}.${hostLabel(r.subdomain)}`;
  return { host: fqdn(label, zoneName(r.zone)), ptr: reverseName(ipv4Octets(r.ipv4)) };
}

/** Checks a task's event and payload; throws `dns_bad_task`. */
export function parseDnsTask(task: { event?: string | undefined; payload: Record<string, unknown> }) {
  const event = DnsTaskEvent.safeParse(task.event);
  if (!event.success)
    throw new DnsTaskError(DnsTaskErrorCode.badTask, `dns: no such event ${JSON.stringify(task.event)}`);
  const payload = DnsTaskPayload.safeParse(task.payload);
  if (!payload.success) {
    const issues = payload.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    throw new DnsTaskError(DnsTaskErrorCode.badTask, `dns: bad payload (${issues})`);
  }
  return { event: event.data, payload: payload.data };
}

/** The DNS agent plugin; `makeUpdater` is the real RFC 2136 client unless a test gives another. */
export function createDnsPlugin(
  makeUpdater: (cfg: DnsPluginConfig) => DnsUpdater = (cfg) => createDnsUpdater(cfg),
): AgentPlugin {
  // One updater per config object (the agent's config is parsed once): the key is imported once.
  const updaters = new WeakMap<DnsPluginConfig, DnsUpdater>();
  const run: TaskHandler = async (task, ctx) => {
    const cfg = ctx.config.dns;
    if (!cfg)
      throw new DnsTaskError(
        DnsTaskErrorCode.unconfigured,
        "this agent has no dns settings (see docs/agent.md)",
      );
    const { event, payload } = parseDnsTask(task);
    const records = vmRecords(cfg, payload);
    const names = recordNames(records);
    const updater = updaters.get(cfg) ?? makeUpdater(cfg);
    updaters.set(cfg, updater);
    if (event === "start") await updater.addVmRecords(records, { signal: ctx.signal });
    else await updater.removeVmRecords(records, { signal: ctx.signal });
    ctx.log.info(event === "start" ? "dns records added" : "dns records removed", {
      ...names,
      address: payload.address,
    });
    // `vmId` files the outcome under the VM's event log (shared/services/tasks.ts).
    return {
      vmId: payload.vmId,
      records: event === "start" ? "added" : "removed",
      name: names.host,
      ptr: names.ptr,
      address: payload.address,
    };
  };
  return { name: DNS_PLUGIN, run };
}

export const dnsPlugin: AgentPlugin = createDnsPlugin();
