/**
 * What a deployment costs with no operations: measured per call where this process can run it (the
 * sweep and notifier handlers on an idle table, the results consumer recording the agent's inventory
 * heartbeats, a whole-site read, the table's bytes), then scaled to a month by the schedules and
 * polling rates AWS and the agent keep up (stated in `IDLE_ASSUMPTIONS`).
 */
import { BatchWriteCommand, ScanCommand } from "@aws-sdk/lib-dynamodb";
import type { AgentInventory, HostInventory } from "../../shared/contracts/messages.ts";
import type { Deps } from "../../shared/services/context.ts";
import { newHost, siteHosts } from "../../shared/services/hosts.ts";
import { signReport } from "../../shared/signing/envelopes.ts";
import type { HostItem } from "../../shared/store/items.ts";
import { keys } from "../../shared/store/keys.ts";
import type { Meter, Tally } from "./meter.ts";
import { bill, durationCost, total } from "./model.ts";
import { cost, MINUTES_PER_MONTH, PRICES } from "./prices.ts";
import type { Rig } from "./rig.ts";
import { ITEM_OVERHEAD_BYTES, itemBytes } from "./units.ts";

export const IDLE_ASSUMPTIONS = {
  /** EventBridge Scheduler runs the sweep, and the notifier, once a minute each. */
  scheduledRunsPerMinute: 1,
  /** The agent's long polls: `pollWaitSeconds` 20 (its default), so three receives a minute. */
  agentReceivesPerMinute: 3,
  /**
   * Lambda's SQS event source mappings (ops, results): AWS documents that at low traffic Lambda
   * "scales back the processing to five concurrent batches, and can optimize to as few as 2"
   * (docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html, read 2026-12-05), polling
   * with long polls. We assume 5 pollers per mapping, each a 20 s long poll: 15 receives a minute.
   */
  esmMappings: 2,
  esmPollersPerMapping: 5,
  esmReceivesPerPollerPerMinute: 3,
  /** The agent's inventory heartbeat: `inventoryIntervalSeconds` 30 (its default). */
  inventoriesPerMinute: 2,
  /** The largest inventory part the agent sends (bridge-agent/inventory.ts). */
  inventoryPartBytes: 256 * 1024,
} as const;

/** A host as the agent's inventory reports it when it runs `domains` and has room left. */
function hostInventory(id: string, domains: HostInventory["domains"] = []): HostInventory {
  return { hostId: id, reachable: true, domains, free: { vcpus: 48, memoryMiB: 196_608 }, load: 0.07 };
}

export async function signedInventory(rig: Rig, site: string, hosts: HostInventory[]): Promise<string> {
  const inv: AgentInventory = {
    type: "inventory",
    site,
    agentId: `agent-${site}`,
    at: new Date().toISOString(),
    hosts,
  };
  return signReport(inv, site, await rig.agentSigner(site));
}

/**
 * Registers `n` hosts in `site` as a steady idle site holds them: each with its last inventory
 * summary and heartbeat (so its item, and the site's reads, have their steady size).
 */
export async function seedSteadySite(deps: Deps, site: string, n: number): Promise<string[]> {
  const at = new Date().toISOString();
  const ids = Array.from({ length: n }, (_, i) => `${site}-${String(i).padStart(4, "0")}`);
  const items = ids.map((id, i) => ({
    ...newHost(deps, {
      id,
      site,
      kind: "kvm",
      address: `10.${Math.floor(i / 250)}.${i % 250}.10`,
      capacity: { vcpus: 64, memoryMiB: 262_144 },
      ratios: { cpu: 4, memory: 1 },
      labels: { rack: `r${String(i % 40).padStart(2, "0")}`, row: `row-${i % 4}` },
    }),
    inventory: { reachable: true, domains: 0, free: { vcpus: 48, memoryMiB: 196_608 }, load: 0.07, at },
    lastHeartbeatAt: at,
    ...keys.host(id),
    ...keys.hostIndex(site, id),
  }));
  for (let i = 0; i < items.length; i += 25 * 8) {
    await Promise.all(
      Array.from({ length: 8 }, (_, b) => items.slice(i + b * 25, i + b * 25 + 25))
        .filter((batch) => batch.length)
        .map((batch) =>
          deps.db.doc.send(
            new BatchWriteCommand({
              RequestItems: { [deps.db.table]: batch.map((Item) => ({ PutRequest: { Item } })) },
            }),
          ),
        ),
    );
  }
  return ids;
}

/** The table's stored bytes by AWS's rules, each item counted again in every index that holds it. */
export async function tableBytes(deps: Deps): Promise<{ bytes: number; items: number; hostBytes: number }> {
  let bytes = 0;
  let items = 0;
  let hostBytes = 0;
  let start: Record<string, unknown> | undefined;
  do {
    const out = await deps.db.doc.send(
      new ScanCommand({ TableName: deps.db.table, ExclusiveStartKey: start }),
    );
    for (const item of out.Items ?? []) {
      const copies = 1 + (item.gsi1pk === undefined ? 0 : 1) + (item.gsi2pk === undefined ? 0 : 1);
      const b = (itemBytes(item) + ITEM_OVERHEAD_BYTES) * copies;
      bytes += b;
      items++;
      if (item.type === "host") hostBytes = Math.max(hostBytes, b);
    }
    start = out.LastEvaluatedKey;
  } while (start);
  return { bytes, items, hostBytes };
}

export type IdleMeasured = {
  notifier: Tally;
  /** One heartbeat of one host running nothing, and what each VM it runs adds. */
  perHost: Tally;
  perVm: { rru: number; wru: number; modeledMs: number };
  /** Signed inventory bytes per host, and the envelope's own. */
  inventoryBytesPerHost: number;
  inventoryEnvelopeBytes: number;
  /** Stored bytes of one host (its item and its index copy). */
  hostStoredBytes: number;
};

/** Divides a tally's counts by `n` (per host), keeping one averaged invocation. */
export function perUnit(t: Tally, n: number): Tally {
  const ms = (k: "wallMs" | "netMs" | "modeledMs") => t.invocations.reduce((s, i) => s + i[k], 0) / n;
  return {
    ...t,
    rru: t.rru / n,
    wru: t.wru / n,
    invocations: [{ fn: "results", wallMs: ms("wallMs"), netMs: ms("netMs"), modeledMs: ms("modeledMs") }],
  };
}

/** Measures one steady heartbeat of `hostIds` (already reported once) through the results consumer. */
export async function heartbeat(
  rig: Rig,
  meter: Meter,
  site: string,
  hostIds: string[],
  domains: Map<string, HostInventory["domains"]> = new Map(),
): Promise<Tally> {
  const body = await signedInventory(
    rig,
    site,
    hostIds.map((id) => hostInventory(id, domains.get(id))),
  );
  meter.take();
  await rig.results([body]);
  return meter.take();
}

/** Site read of `site` as the scheduler does it (all its hosts, eventually consistent), as one invocation. */
export async function siteRead(
  rig: Rig,
  meter: Meter,
  site: string,
): Promise<{ tally: Tally; hosts: number }> {
  meter.take();
  const hosts: HostItem[] = await meter.invoke("scheduler", () => siteHosts(rig.scheduler, site));
  return { tally: meter.take(), hosts: hosts.length };
}

/** Envelope and per-host bytes of the signed inventory, from two real signed messages. */
export async function inventorySizes(rig: Rig, site: string): Promise<{ perHost: number; envelope: number }> {
  const ids = Array.from({ length: 100 }, (_, i) => `${site}-${String(i).padStart(4, "0")}`);
  const one = Buffer.byteLength(
    await signedInventory(
      rig,
      site,
      ids.slice(0, 1).map((id) => hostInventory(id)),
    ),
  );
  const hundred = Buffer.byteLength(
    await signedInventory(
      rig,
      site,
      ids.map((id) => hostInventory(id)),
    ),
  );
  const perHost = (hundred - one) / 99;
  return { perHost, envelope: one - perHost };
}

export type IdleLine = { name: string; usd: number };

/**
 * A month of an idle deployment: one site, one agent, `hosts` hosts running `vms` VMs, with `sweep`
 * the sweep measured on a table of that many hosts (it reads every host twice a run).
 */
export function idleMonth(
  m: IdleMeasured,
  deployment: { hosts: number; vms: number; sweep: Tally },
): IdleLine[] {
  const a = IDLE_ASSUMPTIONS;
  const { hosts, vms } = deployment;
  const runs = MINUTES_PER_MONTH * a.scheduledRunsPerMinute;
  const scheduled = (t: Tally) => runs * (total(bill(t)) + cost(PRICES.schedulerInvocation, 1));
  const sqs = (requests: number) => cost(PRICES.sqsRequest, requests);
  // Inventory: parts of at most 256 KiB, each billed per 64 KB chunk when sent and when received,
  // one poller delete and one results invocation per part.
  const invBytes = hosts * m.inventoryBytesPerHost;
  const parts = Math.max(1, Math.ceil(invBytes / (a.inventoryPartBytes - m.inventoryEnvelopeBytes)));
  const chunks = parts * Math.ceil((invBytes / parts + m.inventoryEnvelopeBytes) / (64 * 1024));
  const hostMs = m.perHost.invocations[0]?.modeledMs ?? 0;
  const perReport =
    cost(PRICES.dynamoRead, m.perHost.rru * hosts + m.perVm.rru * vms) +
    cost(PRICES.dynamoWrite, m.perHost.wru * hosts + m.perVm.wru * vms) +
    sqs(chunks * 2 + parts) +
    cost(PRICES.lambdaRequest, parts) +
    durationCost(hostMs * hosts + m.perVm.modeledMs * vms);
  const reports = MINUTES_PER_MONTH * a.inventoriesPerMinute;
  return [
    { name: "sweep", usd: scheduled(deployment.sweep) },
    { name: "notifier", usd: scheduled(m.notifier) },
    { name: "agent long polls", usd: sqs(MINUTES_PER_MONTH * a.agentReceivesPerMinute) },
    {
      name: "Lambda SQS pollers",
      usd: sqs(MINUTES_PER_MONTH * a.esmMappings * a.esmPollersPerMapping * a.esmReceivesPerPollerPerMinute),
    },
    { name: "inventory heartbeats", usd: reports * perReport },
    { name: "table storage", usd: cost(PRICES.dynamoStorage, (hosts * m.hostStoredBytes) / 1e9) },
  ];
}
