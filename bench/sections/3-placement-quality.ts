/**
 * Section 3, placement quality: the Alibaba openb production trace replayed through every built-in
 * policy and through First-fit and Best-fit baselines written in the benchmark; how many workloads
 * each places before the first one that finds no host, and how full the site is at that moment.
 *
 * Two replays per trace. "As traced" follows the recorded arrivals and departures, as the issue asks;
 * with those lifetimes the site never gets busy (the section notes how busy), so "no departures"
 * also replays the arrivals with every workload staying, as the FGD paper does on this trace, which
 * is what fills the site and tells the strategies apart.
 */
import { placeOne } from "../../shared/scheduler/pipeline.ts";
import { DEFAULT_POLICY, POLICY_NAMES, resolvePolicy } from "../../shared/scheduler/policy.ts";
import { type Figure, figure, type Section, type SectionContext } from "../lib/entry.ts";
import { bestFit, firstFit } from "../placement/baselines.ts";
import { type ReplayResult, replay, type Strategy } from "../placement/replay.ts";
import { generatedTrace, OPENB_DIR, OPENB_VARIANTS, readOpenb, type Trace } from "../placement/trace.ts";

const STRATEGIES: readonly Strategy[] = [
  ...POLICY_NAMES.map((name) => {
    const policy = resolvePolicy(name);
    return { name, choose: (s, d) => placeOne(s, d, policy).hostId } satisfies Strategy;
  }),
  firstFit,
  bestFit,
];

const MODES = [
  { name: "as traced", of: (t: Trace) => t },
  {
    name: "no departures",
    of: (t: Trace): Trace => ({
      ...t,
      workloads: t.workloads.map((w) => ({ ...w, departS: Number.POSITIVE_INFINITY })),
    }),
  },
] as const;

/** The traces to replay: openb's lists when its folder is there, else a generated one (and say so). */
function traces(ctx: SectionContext): Trace[] {
  const variants = ctx.quick ? OPENB_VARIANTS.slice(0, 1) : OPENB_VARIANTS;
  const found = variants.map((v) => readOpenb(v)).filter((t) => t !== undefined);
  if (found.length > 0) return found;
  ctx.note(
    `3-placement-quality: ${OPENB_DIR} is absent, so a generated trace of the same shape stands in for it.`,
  );
  return [generatedTrace()];
}

/** The most workloads, and GPUs, running at once when every workload leaves at its recorded time. */
function peak(t: Trace): { workloads: number; gpus: number } {
  const events = t.workloads.flatMap((w) => {
    const g = Object.values(w.demand.devices).reduce((a, n) => a + n, 0);
    return [
      [w.arriveS, 1, g],
      [w.departS, -1, -g],
    ] as const;
  });
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let n = 0;
  let g = 0;
  const max = { workloads: 0, gpus: 0 };
  for (const [, dn, dg] of events) {
    n += dn;
    g += dg;
    max.workloads = Math.max(max.workloads, n);
    max.gpus = Math.max(max.gpus, g);
  }
  return max;
}

function figures(subject: string, r: ReplayResult, best: ReplayResult, isDefault: boolean): Figure[] {
  const out = [
    figure(`${subject} · placed before first failure`, r.placedBeforeFailure, "workloads", {
      baseline: best.placedBeforeFailure,
      goal: isDefault ? { atLeast: 1, on: "ratio" } : undefined,
    }),
    figure(`${subject} · total placed`, r.totalPlaced, "workloads"),
  ];
  const at = r.atFirstFailure;
  if (at)
    out.push(
      figure(`${subject} · hosts in use at first failure`, at.hostsInUse, "hosts"),
      figure(`${subject} · CPU at first failure`, at.cpu * 100, "%"),
      figure(`${subject} · memory at first failure`, at.memory * 100, "%"),
      figure(`${subject} · GPU at first failure`, at.gpu * 100, "%"),
    );
  return out;
}

export const placementQuality: Section = {
  id: "3-placement-quality",
  title: "Placement quality on a production trace (Alibaba openb; baseline ×: Best-fit, same trace)",
  async run(ctx) {
    const out: Figure[] = [];
    for (const trace of traces(ctx)) {
      const p = peak(trace);
      const gpus = trace.hosts.reduce(
        (a, h) => a + Object.values(h.freeDevices).reduce((x, n) => x + n, 0),
        0,
      );
      ctx.note(
        `3-placement-quality: ${trace.name} trace, ${trace.hosts.length} hosts, ${trace.workloads.length} workloads; as traced, at most ${p.workloads} run at once, holding ${p.gpus} of the site's ${gpus} GPUs.`,
      );
      for (const mode of MODES) {
        ctx.log(`placement quality: ${trace.name}, ${mode.name}`);
        const t = mode.of(trace);
        const results = new Map(STRATEGIES.map((s) => [s.name, replay(t, s)]));
        const best = results.get(bestFit.name)!;
        for (const [name, r] of results) {
          const label = name === DEFAULT_POLICY ? `${name} (default)` : name;
          out.push(...figures(`${trace.name}, ${mode.name}: ${label}`, r, best, name === DEFAULT_POLICY));
        }
      }
    }
    ctx.note(
      "3-placement-quality: vCPUs in thousandths as in the trace; GPUs as one device kind (no workload in these lists names a model) and a fractional GPU as one whole device, since a VM gets whole devices: GPU figures are not comparable with the FGD paper's GPU-sharing ones. A blank cell: no arrival failed. `load` equals `spread` here: no host reports a load.",
    );
    return out;
  },
};
