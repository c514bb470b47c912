/** Section 4: not written yet. */
import type { Section } from "../lib/entry.ts";

export const apiOverhead: Section = {
  id: "4-api-overhead",
  title: "API overhead (in-process)",
  async run() {
    throw new Error("section 4-api-overhead is not written yet");
  },
};
