/**
 * Every section of the benchmark, in the order they run and print. A new section is one module in
 * this folder exporting a `Section`, added here (a typed list, not files found at run time).
 */
import type { Section } from "../lib/entry.ts";
import { placementCore } from "./1-placement-core.ts";
import { placementQuality } from "./3-placement-quality.ts";

export const SECTIONS: readonly Section[] = [placementCore, placementQuality];
