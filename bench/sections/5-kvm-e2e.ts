/** Section 5: not written yet. */
import type { Section } from "../lib/entry.ts";

export const kvmEndToEnd: Section = {
  id: "5-kvm-e2e",
  title: "End to end on real KVM",
  async run() {
    throw new Error("section 5-kvm-e2e is not written yet");
  },
};
