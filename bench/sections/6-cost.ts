/** Section 6: not written yet. */
import type { Section } from "../lib/entry.ts";

export const cost: Section = {
  id: "6-cost",
  title: "Cost per operation at AWS on-demand rates",
  async run() {
    throw new Error("section 6-cost is not written yet");
  },
};
