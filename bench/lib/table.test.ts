import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import type { Entry } from "./entry.ts";
import { renderTable } from "./table.ts";

const entries: Entry[] = [
  {
    section: "1-core",
    name: "1,000 hosts · decisions/s",
    value: 102_000,
    unit: "/s",
    goal: "≥ 20000",
    met: true,
  },
  { section: "1-core", name: "1,000 hosts · p50", value: 9.5, unit: "µs", spread: { min: 9, max: 10 } },
  {
    section: "1-core",
    name: "10,000 hosts · decisions/s",
    value: 9_700,
    unit: "/s",
    baseline: 8_000,
    ratio: 1.21,
  },
  { section: "2-total", name: "overcommitted hosts", value: 0, unit: "hosts" },
];

describe("renderTable", () => {
  const table = renderTable(
    entries,
    new Map([
      ["1-core", "Placement core"],
      ["2-total", "Totals"],
    ]),
  );

  it("lays subjects out in rows and measures in columns, with spread, ratio and goal", () => {
    const lines = table.split("\n");
    expect(lines[0]).toBe("### 1-core: Placement core");
    const row = lines.find((l) => l.startsWith("| 1,000 hosts"))!;
    expect(row).toContain("102,000");
    expect(row).toContain("✓");
    expect(row).toContain("±5%");
    expect(lines.find((l) => l.startsWith("| 10,000 hosts"))).toContain("×1.21");
    expect(table).toContain("- goal 1,000 hosts · decisions/s ≥ 20000 /s: met");
  });

  // The README carries this table and `npm run lint` checks the README's formatting: what the bench
  // writes must be what Biome would write, or a fresh `--readme` run breaks CI.
  it("is already formatted as Biome formats Markdown", () => {
    const biome = new URL("../../node_modules/.bin/biome", import.meta.url).pathname;
    const formatted = execFileSync(biome, ["format", "--stdin-file-path=README.md"], {
      input: `${table}\n`,
      encoding: "utf8",
    });
    expect(formatted).toBe(`${table}\n`);
  });
});
