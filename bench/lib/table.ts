/**
 * The printed table: per section, a Markdown matrix with subjects in rows and measures in columns
 * (figure names are "<subject> · <measure>"), so it reads the same in a terminal and in the README.
 * A section whose names do not split that way gets one row per figure.
 */
import type { Entry } from "./entry.ts";

const SEP = " · ";

/** Numbers as people read them: thousands separated, about three significant digits. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const abs = Math.abs(v);
  const digits = Number.isInteger(v) || abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Value, spread (± half the min–max range, as a share of the median), ratio to baseline, goal met. */
function cell(e: Entry, withUnit: boolean): string {
  let s = formatNumber(e.value);
  if (withUnit) s += e.unit === "%" ? "%" : ` ${e.unit}`;
  if (e.spread && e.value !== 0) {
    const half = ((e.spread.max - e.spread.min) / 2 / Math.abs(e.value)) * 100;
    s += ` ±${half < 1 ? half.toFixed(1) : half.toFixed(0)}%`;
  }
  if (e.ratio !== undefined) s += ` ×${e.ratio.toFixed(2)}`;
  if (e.met !== undefined) s += e.met ? " ✓" : " ✗";
  return s;
}

function markdown(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? "").length)));
  const line = (r: string[]) => `| ${widths.map((w, c) => (r[c] ?? "").padEnd(w)).join(" | ")} |`;
  return [line(header), `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`, ...rows.map(line)];
}

function sectionTable(entries: Entry[]): string[] {
  if (!entries.every((e) => e.name.includes(SEP))) {
    return markdown(
      ["figure", "value", "baseline", "goal"],
      entries.map((e) => [
        e.name,
        cell(e, true),
        e.baseline === undefined ? "" : formatNumber(e.baseline),
        e.goal ?? "",
      ]),
    );
  }
  const split = entries.map((e) => {
    const at = e.name.indexOf(SEP);
    return { e, subject: e.name.slice(0, at), measure: e.name.slice(at + SEP.length) };
  });
  const subjects = [...new Set(split.map((s) => s.subject))];
  const measures = [...new Set(split.map((s) => s.measure))];
  // A column whose cells share a unit names it once in its header.
  const units = measures.map((m) => {
    const set = new Set(split.filter((s) => s.measure === m).map((s) => s.e.unit));
    return set.size === 1 ? [...set][0]! : undefined;
  });
  const header = [
    "",
    ...measures.map((m, c) => (units[c] && !m.includes(units[c]) ? `${m} (${units[c]})` : m)),
  ];
  const rows = subjects.map((subject) => [
    subject,
    ...measures.map((m, c) => {
      const found = split.find((s) => s.subject === subject && s.measure === m);
      return found ? cell(found.e, units[c] === undefined) : "";
    }),
  ]);
  return markdown(header, rows);
}

/** The whole table: one block per section, in the order given, each followed by its goals. */
export function renderTable(entries: readonly Entry[], titles: ReadonlyMap<string, string>): string {
  const out: string[] = [];
  for (const [id, title] of titles) {
    const mine = entries.filter((e) => e.section === id);
    if (mine.length === 0) continue;
    out.push(`### ${id}: ${title}`, "", ...sectionTable(mine), "");
    const goals = mine.filter((e) => e.goal !== undefined);
    for (const e of goals)
      out.push(
        `- goal ${e.name} ${e.goal}${e.unit && !e.goal!.startsWith("ratio") ? ` ${e.unit}` : ""}: ${e.met ? "met" : "not met"}`,
      );
    if (goals.length) out.push("");
  }
  out.push(
    "±: half the range (min to max) of the runs, as a share of the median. ×: ratio to the baseline measured in the same run. ✓/✗: goal met or not.",
  );
  return out.join("\n");
}
