/**
 * Every section of the benchmark, in the order they run and print. A new section is one module in
 * this folder exporting a `Section`, added here (a typed list, not files found at run time).
 */
import type { Section } from "../lib/entry.ts";
import { placementCore } from "./1-placement-core.ts";
import { placementEndToEnd } from "./2-placement-e2e.ts";
import { placementQuality } from "./3-placement-quality.ts";
import { apiOverhead } from "./4-api-overhead.ts";
import { kvmEndToEnd } from "./5-kvm-e2e.ts";
import { cost } from "./6-cost.ts";
import { scale } from "./7-scale.ts";

export const SECTIONS: readonly Section[] = [
  placementCore,
  placementEndToEnd,
  placementQuality,
  apiOverhead,
  kvmEndToEnd,
  cost,
  scale,
];
