/**
 * Section 7, scale: a simulated site of 10,000 hosts and 100,000 running VMs (1,000 and 10,000 with
 * `--quick`) on the local stack. The site is seeded straight into DynamoDB Local, and the sim agent's
 * state files hold the same domains; then a real agent process sends its inventory (in parts, each
 * one message) and a results consumer process records it. Figures: how long seeding takes, the time
 * from the inventory's stamp until the consumer has recorded every host, the agent's memory after its
 * inventory, and the scheduler placing one more VM on the full site, cold and warm.
 */

import { join } from "node:path";
import { siteHosts } from "../../shared/services/hosts.ts";
import { type BenchBed, startBenchBed } from "../lib/bed.ts";
import type { Section } from "../lib/entry.ts";
import { type Figure, figure } from "../lib/entry.ts";
import { summarize } from "../lib/stats.ts";
import { measurePlacement } from "../scale/placement.ts";
import { startAgent, startResultsConsumer } from "../scale/processes.ts";
import { generateSite, seedSite, writeSimStates } from "../scale/site.ts";

const SITE = "scale";

/** A median and its spread, or the one value when there was one run. */
const stat = (xs: number[]) => (xs.length > 1 ? summarize(xs) : xs[0]!);
const VMS_PER_HOST = 10;
const MIB = 1024 * 1024;
/** The agent's default inventory period: a site whose inventory takes longer to record falls behind. */
const INVENTORY_INTERVAL_S = 30;

export const scale: Section = {
  id: "7-scale",
  title: "Scale: a simulated site of 10,000 hosts and 100,000 VMs",
  async run(ctx) {
    const size = ctx.quick
      ? { hosts: 1_000, inventories: 1, cold: 2, warm: 3, recordTimeoutMs: 120_000 }
      : { hosts: 10_000, inventories: 2, cold: 3, warm: 10, recordTimeoutMs: 900_000 };
    const vms = size.hosts * VMS_PER_HOST;
    const subject = `${size.hosts.toLocaleString("en-US")} hosts, ${vms.toLocaleString("en-US")} VMs`;
    const figures: Figure[] = [];
    const bed = await startBenchBed([SITE]);
    try {
      const { deps } = await bed.controlPlane();
      const site = generateSite(SITE, size.hosts, VMS_PER_HOST);
      ctx.log(`scale: seeding ${subject}`);
      // The consumer starts and the agent's state files are written while the table is seeded.
      const [seeded, consumer] = await Promise.all([
        seedSite(deps, SITE, site),
        startResultsConsumer(bed),
        writeSimStates(join(bed.dataDir, "sim"), site),
      ]);
      ctx.log(`scale: ${seeded.items} items in ${seeded.seconds.toFixed(1)} s`);
      figures.push(
        figure(`${subject}: seed (hosts, VMs, claims)`, seeded.seconds, "s"),
        figure(`${subject}: seed rate`, seeded.items / seeded.seconds, "items/s"),
      );

      const record = await inventories(bed, ctx, consumer, site, size);
      figures.push(
        figure(`${subject}: inventory → every host recorded`, stat(record.seconds), "s", {
          goal: { atMost: INVENTORY_INTERVAL_S },
        }),
        figure(`${subject}: hosts recorded/s`, stat(record.seconds.map((s) => size.hosts / s)), "hosts/s"),
        figure(`${subject}: inventory parts (messages)`, record.parts, "parts"),
        figure(`${subject}: agent lists and sends`, stat(record.agentSeconds), "s"),
        figure(`${subject}: agent RSS after inventory`, stat(record.rss), "MiB"),
        figure(`${subject}: agent peak RSS`, stat(record.peakRss), "MiB"),
        figure(`${subject}: agent heap after inventory`, stat(record.heap), "MiB"),
        figure(`${subject}: drift found`, consumer.drifts, "drifts", { goal: { atMost: 0 } }),
      );
      await consumer.child.stop();

      ctx.log(`scale: placing on the full site (${size.cold} cold, ${size.cold * size.warm} warm)`);
      const placed = await measurePlacement(bed, SITE, { cold: size.cold, warm: size.warm });
      figures.push(
        figure(`${subject}: placement, cold (reads every host)`, stat(placed.coldMs), "ms"),
        figure(`${subject}: placement, warm (host cache)`, stat(placed.warmMs), "ms"),
      );
      if (placed.siteReads !== size.cold)
        ctx.note(
          `7-scale: ${placed.siteReads} reads of the whole site for ${size.cold} cold placements (expected one each).`,
        );

      for (const p of [...record.problems, ...consumer.problems].slice(0, 3))
        ctx.note(`7-scale: logged: ${p}`);
      const scaled = ctx.quick
        ? `--quick scales the site down to ${subject} (the full run: 10,000 hosts, 100,000 VMs)`
        : subject;
      const runs =
        size.inventories === 1
          ? "one inventory"
          : `${size.inventories} inventories, a fresh agent process for each`;
      ctx.note(
        `7-scale: ${scaled}, ${VMS_PER_HOST} running VMs a host (sim driver), seeded with BatchWriteItem straight into DynamoDB Local (hosts with their counters, VMs, claims; not their start operations or name reservations). ` +
          `"inventory → every host recorded": from the inventory's \`at\` (stamped by the agent before listing) until the results consumer (one process, 2 pollers of 10 messages, 8 hosts at once per part) has recorded every host; ${runs}; goal: within the agent's default inventory period (${INVENTORY_INTERVAL_S} s). ` +
          "Agent memory: the sim driver keeps every domain in the agent's heap; the inventory itself holds a few parts of 256 KiB at a time. " +
          `Placement: scheduleOperation for one more VM (2 vCPUs, 4 GiB) including its claim transaction and command; cold = the first placement of a new control plane (reads all ${size.hosts.toLocaleString("en-US")} hosts), warm = the next ones over its host cache (kept for 60 s here, USHER_HOST_CACHE_MS). DynamoDB Local and every process share this machine's cores.`,
      );
    } finally {
      await bed.stop();
    }
    return figures;
  },
};

type Size = { hosts: number; inventories: number; recordTimeoutMs: number };

/** Runs `size.inventories` agents one after the other, each sending one inventory, and times them. */
async function inventories(
  bed: BenchBed,
  ctx: { log(text: string): void },
  consumer: Awaited<ReturnType<typeof startResultsConsumer>>,
  site: ReturnType<typeof generateSite>,
  size: Size,
) {
  const out = {
    seconds: [] as number[],
    agentSeconds: [] as number[],
    rss: [] as number[],
    peakRss: [] as number[],
    heap: [] as number[],
    parts: 0,
    problems: [] as string[],
  };
  for (let run = 0; run < size.inventories; run++) {
    const agent = await startAgent(bed, SITE, site);
    try {
      const sent = await agent.inventory;
      const mem = await agent.rss();
      ctx.log(
        `scale: inventory ${run + 1} sent: ${sent.hosts} hosts in ${sent.parts} parts, ${sent.ms} ms; agent RSS ${(mem.now / MIB).toFixed(0)} MiB`,
      );
      if (sent.hosts !== size.hosts) throw new Error(`the agent listed ${sent.hosts} of ${size.hosts} hosts`);
      const doneAt = await consumer.recorded(sent.at, size.hosts, size.recordTimeoutMs);
      const seconds = (performance.timeOrigin + doneAt - Date.parse(sent.at)) / 1000;
      ctx.log(`scale: every host recorded ${seconds.toFixed(1)} s after the inventory's stamp`);
      out.seconds.push(seconds);
      out.agentSeconds.push(sent.ms / 1000);
      out.rss.push(mem.now / MIB);
      out.peakRss.push(mem.peak / MIB);
      out.heap.push(sent.memory.heapUsed / MIB);
      out.parts = consumer.parts(sent.at);
      if (run === size.inventories - 1) await checkRecorded(bed, sent.at, size.hosts);
      out.problems.push(...agent.problems);
    } finally {
      await agent.child.stop();
    }
  }
  return out;
}

/** Every host's record carries the inventory: a check on the log lines the timing counted. */
async function checkRecorded(bed: BenchBed, at: string, hosts: number): Promise<void> {
  const { deps } = await bed.controlPlane();
  const items = await siteHosts(deps, SITE);
  const behind = items.filter((h) => h.lastHeartbeatAt !== at || h.inventory?.at !== at);
  if (items.length !== hosts || behind.length > 0)
    throw new Error(`${behind.length} of ${items.length} hosts do not carry the inventory of ${at}`);
}
