/** Section 7: not written yet. */
import type { Section } from "../lib/entry.ts";

export const scale: Section = {
  id: "7-scale",
  title: "Scale: a simulated site of 10,000 hosts and 100,000 VMs",
  async run() {
    throw new Error("section 7-scale is not written yet");
  },
};
