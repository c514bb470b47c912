/**
 * Section 2, placement end to end on DynamoDB Local: start operations waiting on the ops queue, placed
 * by 1, 2 and 4 scheduling consumer processes (each the local stack's consumer, two pollers of ten
 * messages) on a site of 1,000 hosts: placements per second, conflict retries per placement, and the
 * hosts over capacity at the end (must be none). Each consumer count has a site of its own, so the
 * runs do not fill each other's hosts; runs of one count follow each other on its site.
 */
import type { Child } from "../../infra/local/child.ts";
import { startBenchBed } from "../lib/bed.ts";
import type { Section } from "../lib/entry.ts";
import { type Figure, figure } from "../lib/entry.ts";
import { summarize } from "../lib/stats.ts";
import {
  hostSpec,
  type Logged,
  overcommitted,
  release,
  stageStarts,
  waitDispatched,
} from "../placement/e2e.ts";

const HOSTS = 1000;
const COUNTS = [1, 2, 4] as const;

export const placementEndToEnd: Section = {
  id: "2-placement-e2e",
  title: "Placement end to end on DynamoDB Local (1,000 hosts; scheduling consumer processes)",
  async run(ctx) {
    const runs = ctx.quick ? 2 : 3;
    const perRun = ctx.quick ? 100 : 400;
    const sites = COUNTS.map((k) => `p${k}`);
    const bed = await startBenchBed(sites);
    const figures: Figure[] = [];
    try {
      const { deps } = await bed.controlPlane();
      const hostIds = new Map<string, string[]>();
      const t0 = performance.now();
      for (const site of sites) hostIds.set(site, await bed.seedHosts(site, HOSTS, hostSpec));
      ctx.log(
        `placement e2e: ${sites.length} sites of ${HOSTS} hosts seeded in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
      const rates: Record<number, number[]> = {};
      const retries: Record<number, number[]> = {};
      const over: Record<number, number> = {};
      for (const k of COUNTS) {
        const site = `p${k}`;
        const logged: Logged[] = [];
        const consumers: Child[] = [];
        for (let c = 1; c <= k; c++)
          consumers.push(
            bed.consumer(
              `scheduler-${c}`,
              "scheduler",
              (_source, line) => {
                if (line.startsWith("{")) {
                  const l = JSON.parse(line) as Record<string, unknown>;
                  logged.push({
                    msg: String(l.msg),
                    ...(typeof l.opId === "string" ? { opId: l.opId } : {}),
                    ...(typeof l.attempt === "number" ? { attempt: l.attempt } : {}),
                    at: Date.parse(String(l.ts)),
                  });
                }
              },
              { USHER_DEFAULT_SITE: site },
            ),
          );
        try {
          // Up and warm: a few placements before the measured runs (JIT, connections, the host cache).
          const warm = await stageStarts(bed, deps, site, 10 * k, 900 + k);
          await release(deps, warm);
          await waitDispatched(logged, warm.opIds, 120_000, consumers);
          rates[k] = [];
          retries[k] = [];
          for (let r = 0; r < runs; r++) {
            const staged = await stageStarts(bed, deps, site, perRun, 100 * k + r);
            const started = Date.now();
            await release(deps, staged);
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
        over[k] = await overcommitted(deps, site, hostIds.get(site)!);
      }
      const one = summarize(rates[1]!);
      for (const k of COUNTS) {
        const subject = `${k} consumer${k > 1 ? "s" : ""}`;
        figures.push(
          figure(`${subject} · placements/s`, summarize(rates[k]!), "placements/s", {
            ...(k > 1 ? { baseline: one } : {}),
            ...(k === 2 ? { goal: { atLeast: 200 } } : {}),
          }),
          figure(`${subject} · conflict retries per placement`, summarize(retries[k]!), "retries"),
          figure(`${subject} · overcommitted hosts at the end`, over[k]!, "hosts", { goal: { atMost: 0 } }),
        );
      }
      ctx.note(
        `2-placement-e2e: ${runs} runs of ${perRun} VM starts per consumer count (1–8 vCPUs, 1–32 GiB, 1 in 20 with a GPU), released onto the ops queue at once; a placement is the whole scheduling of a start (read the operation and VM, mark it scheduling, decide over the host cache, claim with a conditional transaction, record the dispatch, sign and send the command). placements/s: placed ÷ (last dispatch − release). ×: against 1 consumer in the same run. Retries: claim attempts after the first (a stale host or a transaction conflict). DynamoDB Local is one Java process on the same two cores as the consumers.`,
      );
    } finally {
      await bed.stop();
    }
    return figures;
  },
};
