/**
 * Section 2, placement end to end on DynamoDB Local: start operations waiting on the ops queue, placed
 * by 1, 2 and 4 scheduling consumer processes (each the local stack's consumer, two pollers of ten
 * messages) on a site of 1,000 hosts: placements per second, conflict retries per placement, and the
 * hosts over capacity at the end (must be none). Each consumer count has a site of its own, so the
 * runs do not fill each other's hosts; runs of one count follow each other on its site.
 *
 * Baseline: DynamoDB Local's own rate for transactions shaped like a placement's claim, measured in
 * the same run once its JVM is warm, with nothing of Usher's in the way: the ceiling on this machine.
 */
import type { Child, LineSink } from "../../infra/local/child.ts";
import { startBenchBed } from "../lib/bed.ts";
import { type Figure, figure, type Section } from "../lib/entry.ts";
import { summarize } from "../lib/stats.ts";
import {
  claimShapedCeiling,
  hostSpec,
  type Logged,
  newQueue,
  overcommitted,
  release,
  stageStarts,
  waitDispatched,
} from "../placement/e2e.ts";

const HOSTS = 1000;
const COUNTS = [1, 2, 4] as const;

/** Parses the consumers' JSON log lines into `logged`. */
const collect =
  (logged: Logged[]): LineSink =>
  (_source, line) => {
    if (!line.startsWith("{")) return;
    const l = JSON.parse(line) as Record<string, unknown>;
    logged.push({
      msg: String(l.msg),
      ...(typeof l.opId === "string" ? { opId: l.opId } : {}),
      ...(typeof l.attempt === "number" ? { attempt: l.attempt } : {}),
      at: Date.parse(String(l.ts)),
    });
  };

export const placementEndToEnd: Section = {
  id: "2-placement-e2e",
  title: "Placement end to end on DynamoDB Local (1,000 hosts; scheduling consumer processes)",
  async run(ctx) {
    const runs = ctx.quick ? 1 : 3;
    const perRun = ctx.quick ? 150 : 400;
    const sites = COUNTS.map((k) => `p${k}`);
    const bed = await startBenchBed(sites);
    const figures: Figure[] = [];
    try {
      const { deps } = await bed.controlPlane();
      const hostIds = new Map<string, string[]>();
      for (const site of sites) hostIds.set(site, await bed.seedHosts(site, HOSTS, hostSpec));
      // DynamoDB Local's JVM takes thousands of requests to warm: warm it, then measure its ceiling.
      const all = [...hostIds.values()].flat();
      await claimShapedCeiling(deps, all, { inFlight: 16, ms: ctx.quick ? 4_000 : 10_000, tag: "warm" });
      const ceiling: number[] = [];
      const rates: Record<number, number[]> = {};
      const retries: Record<number, number[]> = {};

      for (const k of COUNTS) {
        const site = `p${k}`;
        const logged: Logged[] = [];
        const consumers: Child[] = [];
        // An ops queue of the round's own: a stopped consumer's last long poll may still be handed
        // messages by the emulator (and hide them for a visibility timeout).
        const opsQueue = await newQueue(deps, `usher-bench-ops-${site}`);
        for (let c = 1; c <= k; c++)
          consumers.push(
            bed.consumer(`scheduler-${c}`, "scheduler", collect(logged), {
              USHER_DEFAULT_SITE: site,
              USHER_OPS_QUEUE_URL: opsQueue,
            }),
          );
        rates[k] = [];
        retries[k] = [];
        try {
          // Up and warm: a few placements before the measured runs (JIT, connections, the host cache).
          const warm = await stageStarts(bed, deps, site, 10 * k, 900 + k);
          await release(deps, warm, opsQueue);
          await waitDispatched(logged, warm.opIds, 120_000, consumers);
          for (let r = 0; r < runs; r++) {
            // The ceiling beside each run, so both see the machine as it is then.
            ceiling.push(await claimShapedCeiling(deps, all, { inFlight: 16, ms: 2_000, tag: `c${k}-${r}` }));
            const staged = await stageStarts(bed, deps, site, perRun, 100 * k + r);
            const started = Date.now();
            await release(deps, staged, opsQueue);
            const { done } = await waitDispatched(logged, staged.opIds, 600_000, consumers);
            const last = Math.max(...done.map((l) => l.at));
            rates[k].push(done.length / ((last - started) / 1000));
            const claims = logged.filter(
              (l) => l.msg === "capacity claimed" && l.opId !== undefined && staged.opIds.has(l.opId),
            );
            retries[k].push(claims.reduce((a, l) => a + (l.attempt ?? 0), 0) / Math.max(1, claims.length));
            ctx.log(
              `placement e2e: ${k} consumer(s), run ${r + 1}: ${rates[k].at(-1)!.toFixed(0)} placements/s`,
            );
          }
        } finally {
          await Promise.all(consumers.map((c) => c.stop()));
        }
      }
      const over = await overcommitted(deps, sites);
      const base = summarize(ceiling);
      figures.push(figure("DynamoDB Local · claim-shaped transactions/s (16 in flight)", base, "tx/s"));
      for (const k of COUNTS) {
        const subject = `${k} consumer${k > 1 ? "s" : ""}`;
        figures.push(
          figure(`${subject} · placements/s`, summarize(rates[k]!), "placements/s", {
            baseline: base,
            ...(k === 2 ? { goal: { atLeast: 200 } } : {}),
          }),
          figure(`${subject} · conflict retries per placement`, summarize(retries[k]!), "retries"),
          figure(`${subject} · overcommitted hosts at the end`, over.get(`p${k}`)!, "hosts", {
            goal: { atMost: 0 },
          }),
        );
      }
      ctx.note(
        `2-placement-e2e: ${runs} run(s) of ${perRun} VM starts per consumer count (1–8 vCPUs, 1–32 GiB, 1 in 20 with a GPU), released onto the ops queue at once, after a warm-up. A placement is the whole scheduling of a start: read the operation and VM (at once), decide over the host cache, then one conditional transaction that claims the host and records the dispatch, then sign and send the command; each consumer process handles up to 20 at once (two pollers of ten). placements/s: placed ÷ (last dispatch − release). ×: against DynamoDB Local's own rate for a transaction of the claim's shape with 16 in flight, measured beside each run (every placement makes one, plus two reads): the ceiling here, where DynamoDB Local is one Java process on the same two cores as the consumers. Retries: claim attempts after the first (another scheduler took the host first, or a stale host).`,
      );
    } finally {
      await bed.stop();
    }
    return figures;
  },
};
