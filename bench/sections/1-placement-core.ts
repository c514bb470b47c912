/**
 * Section 1, placement core: decisions per second and decision times of the default policy on one
 * core at 100, 1,000 and 10,000 hosts of realistic mixed specs at steady state (70% of memory
 * allocated, a VM leaving for each placed), against a naive scan of every host measured alongside;
 * and the heap a snapshot of the site holds.
 */
import { resolve } from "node:path";
import { inChild } from "../lib/child.ts";
import { type Figure, figure, type Goal, type Section } from "../lib/entry.ts";
import { summarize } from "../lib/stats.ts";
import type { CoreInput, CoreOutput } from "../placement/core-child.ts";

const CHILD = resolve(import.meta.dirname, "../placement/core-child.ts");

/** Sites measured, with the decisions/s we aim for (issue 5). */
const SIZES: readonly { hosts: number; goal?: Goal }[] = [
  { hosts: 100 },
  { hosts: 1000, goal: { atLeast: 20_000 } },
  { hosts: 10_000, goal: { atLeast: 5_000 } },
];

const MIB = 1024 * 1024;

export const placementCore: Section = {
  id: "1-placement-core",
  title: "Placement core (default policy, one core, steady state at 70% of memory allocated)",
  async run(ctx) {
    const figures: Figure[] = [];
    for (const { hosts, goal } of SIZES) {
      const input: CoreInput = ctx.quick
        ? { hosts, runs: 3, runMs: 300, warmupMs: 200 }
        : { hosts, runs: 7, runMs: 1000, warmupMs: 500 };
      ctx.log(`placement core: ${hosts} hosts, ${input.runs} runs of ${input.runMs} ms each side`);
      const out = await inChild<CoreOutput>(CHILD, input);
      const subject = `${hosts.toLocaleString("en-US")} hosts`;
      const naive = {
        rate: summarize(out.naive.rate),
        p50: summarize(out.naive.p50Us),
        p99: summarize(out.naive.p99Us),
      };
      figures.push(
        figure(`${subject} · decisions/s`, summarize(out.pipeline.rate), "decisions/s", {
          baseline: naive.rate,
          goal,
        }),
        figure(`${subject} · p50 decision`, summarize(out.pipeline.p50Us), "µs", { baseline: naive.p50 }),
        figure(`${subject} · p99 decision`, summarize(out.pipeline.p99Us), "µs", { baseline: naive.p99 }),
        figure(`${subject} · naive scan decisions/s`, naive.rate, "decisions/s"),
        figure(`${subject} · VMs running`, out.vms, "VMs"),
        figure(`${subject} · snapshot heap, empty`, summarize(out.heapEmpty.map((b) => b / MIB)), "MiB"),
        figure(
          `${subject} · snapshot heap, VMs running`,
          summarize(out.heapLoaded.map((b) => b / MIB)),
          "MiB",
        ),
      );
    }
    ctx.note(
      "1-placement-core: a decision is one `placeOne` call; decisions/s counts whole steps (a random VM released, one placed and applied), p50/p99 time the call alone. Baseline (×): a naive scheduler in the benchmark that visits every host as a plain object and keeps the best fit (bench/placement/naive.ts), same demands, same site. External references, not measured here: kube-scheduler about 100–300 pods/s at 5,000–30,000 nodes; Protean (Azure) 'a few ms' per allocation.",
    );
    return figures;
  },
};
