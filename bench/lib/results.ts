/** Where the figures go besides stdout: `bench/results.json`, and the README's table on request. */
import { readFileSync, writeFileSync } from "node:fs";
import type { Entry } from "./entry.ts";

export function writeResults(path: string, entries: readonly Entry[]): void {
  writeFileSync(path, `${JSON.stringify(entries, null, 2)}\n`);
}

const START = "<!-- bench:results:start -->";
const END = "<!-- bench:results:end -->";

/** Replaces the README's text between the two markers with `text`; throws when a marker is missing. */
export function updateReadme(path: string, text: string): void {
  const readme = readFileSync(path, "utf8");
  const from = readme.indexOf(START);
  const to = readme.indexOf(END);
  if (from < 0 || to < from) throw new Error(`${path} lacks the ${START} … ${END} markers`);
  writeFileSync(path, `${readme.slice(0, from + START.length)}\n${text}\n${readme.slice(to)}`);
}
