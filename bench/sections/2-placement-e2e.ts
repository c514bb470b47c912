/** Section 2: not written yet. */
import type { Section } from "../lib/entry.ts";

export const placementEndToEnd: Section = {
  id: "2-placement-e2e",
  title: "Placement end to end on DynamoDB Local",
  async run() {
    throw new Error("section 2-placement-e2e is not written yet");
  },
};
