/**
 * One figure of the benchmark, as printed in the table and written to `bench/results.json`, and the
 * shape of a section: one module under `bench/sections/` whose `run` returns its figures.
 */
import type { Summary } from "./stats.ts";

/** A figure as a section reports it; the runner adds the section's id. */
export type Figure = {
  /** "<subject> · <measure>", e.g. "1,000 hosts · decisions/s": the table puts subjects in rows. */
  name: string;
  /** The median of the runs (or the one value of a deterministic measurement). */
  value: number;
  unit: string;
  /** The extremes of the runs the median came from; absent for deterministic figures. */
  spread?: { min: number; max: number };
  runs?: number;
  /** The same measure of a baseline taken in the same run, and `value / baseline`. */
  baseline?: number;
  ratio?: number;
  /** What we aim for, as text ("≥ 20000", "ratio ≥ 1"), and whether this run met it. */
  goal?: string;
  met?: boolean;
};

export type Entry = { section: string } & Figure;

/** Checked against the value, or against the ratio to the baseline. */
export type Goal = { atLeast: number; on?: "value" | "ratio" } | { atMost: number; on?: "value" | "ratio" };

export type SectionContext = {
  /** The short run (`--quick`): fewer and shorter repetitions, the whole benchmark under three minutes. */
  quick: boolean;
  /** Progress, to stderr. */
  log(text: string): void;
  /** A remark printed under the table (a fallback taken, a reference figure that was not measured). */
  note(text: string): void;
};

export type Section = {
  /** "<n>-<name>", as in the file name; `--only` matches it, its number or its name. */
  id: string;
  title: string;
  run(ctx: SectionContext): Promise<Figure[]>;
};

/** A figure from a median (or a plain number), with its ratio to a baseline and its goal checked. */
export function figure(
  name: string,
  measured: Summary | number,
  unit: string,
  options: { baseline?: Summary | number | undefined; goal?: Goal | undefined } = {},
): Figure {
  const out: Figure =
    typeof measured === "number"
      ? { name, value: measured, unit }
      : {
          name,
          value: measured.median,
          unit,
          spread: { min: measured.min, max: measured.max },
          runs: measured.runs,
        };
  const { baseline, goal } = options;
  if (baseline !== undefined) {
    out.baseline = typeof baseline === "number" ? baseline : baseline.median;
    out.ratio = out.value / out.baseline;
  }
  if (goal) {
    const on = goal.on ?? "value";
    const x = on === "ratio" ? out.ratio : out.value;
    if (x === undefined) throw new Error(`figure ${name}: a goal on the ratio needs a baseline`);
    const prefix = on === "ratio" ? "ratio " : "";
    if ("atLeast" in goal) {
      out.goal = `${prefix}≥ ${goal.atLeast}`;
      out.met = x >= goal.atLeast;
    } else {
      out.goal = `${prefix}≤ ${goal.atMost}`;
      out.met = x <= goal.atMost;
    }
  }
  return out;
}
