/**
 * The benchmark: runs the sections (all, or those `--only` names), prints one table, and writes every
 * figure to `bench/results.json`.
 *
 *   node bench/run.ts [--quick] [--only <section>]... [--readme]
 *
 * `--quick` runs fewer and shorter repetitions (the whole benchmark under three minutes); `--only`
 * takes a section's id ("1-placement-core"), number ("1") or name ("placement-core"), and may be
 * repeated; `--readme` also replaces the table in the README's Benchmarks section.
 */
import { cpus, loadavg } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Entry, Section } from "./lib/entry.ts";
import { updateReadme, writeResults } from "./lib/results.ts";
import { renderTable } from "./lib/table.ts";
import { SECTIONS } from "./sections/index.ts";

function matches(section: Section, wanted: string): boolean {
  const [number, ...name] = section.id.split("-");
  return wanted === section.id || wanted === number || wanted === name.join("-");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string", multiple: true },
      readme: { type: "boolean", default: false },
    },
  });
  const only = values.only ?? [];
  const unknown = only.filter((w) => !SECTIONS.some((s) => matches(s, w)));
  if (unknown.length) {
    console.error(`unknown section ${unknown.join(", ")}; sections: ${SECTIONS.map((s) => s.id).join(", ")}`);
    return 2;
  }
  const chosen = SECTIONS.filter((s) => only.length === 0 || only.some((w) => matches(s, w)));
  const quick = values.quick;
  const machine = `Node ${process.version}, ${cpus()[0]?.model ?? "unknown CPU"} × ${cpus().length}, load average ${loadavg()[0]!.toFixed(1)} at start${quick ? ", --quick" : ""}`;

  const entries: Entry[] = [];
  const notes: string[] = [];
  let failed = 0;
  const started = performance.now();
  for (const section of chosen) {
    const t0 = performance.now();
    const ctx = {
      quick,
      log: (text: string) => console.error(`[bench] ${text}`),
      note: (text: string) => notes.push(text),
    };
    try {
      for (const f of await section.run(ctx)) entries.push({ section: section.id, ...f });
      ctx.log(`${section.id} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    } catch (error) {
      // One broken section must not hide the others' figures.
      failed++;
      notes.push(
        `${section.id} FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
      );
    }
  }

  const table = [
    renderTable(entries, new Map(chosen.map((s) => [s.id, s.title]))),
    "",
    ...notes.map((n) => `- ${n}`),
    "",
    `${machine}; ${((performance.now() - started) / 1000).toFixed(0)} s in all.`,
  ].join("\n");
  console.log(table);
  writeResults(resolve(import.meta.dirname, "results.json"), entries);
  if (values.readme) updateReadme(resolve(import.meta.dirname, "../README.md"), table);
  return failed > 0 ? 1 : 0;
}

process.exitCode = await main();
