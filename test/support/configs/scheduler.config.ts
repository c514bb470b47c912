/**
 * A site config for test/scheduler.test.ts, loaded by the stack's API and consumers through
 * USHER_CONFIG: a plugin adding a placement filter (hosts labelled `maintenance=yes` take nothing),
 * a site policy that runs it, and a policy for one project.
 */
import { defineConfig } from "../../../shared/plugins/config.ts";
import type { Plugin } from "../../../shared/plugins/types.ts";
import { ALL_FILTERS, POLICIES } from "../../../shared/scheduler/policy.ts";

const maintenance: Plugin = {
  name: "maintenance",
  runsIn: "control-plane",
  hooks: {},
  placement: {
    filters: {
      not_in_maintenance: {
        name: "not_in_maintenance",
        reason: "host is in maintenance",
        active: () => true,
        accepts: (s, i) => s.labels[i]?.maintenance !== "yes",
        keep(s, q, slots, n) {
          let kept = 0;
          for (let p = 0; p < n; p++) if (this.accepts(s, slots[p]!, q)) slots[kept++] = slots[p]!;
          return kept;
        },
      },
    },
  },
};

export default defineConfig({
  plugins: [maintenance],
  scheduler: {
    projects: { spready: "spread" },
    policies: {
      careful: { filters: [...ALL_FILTERS, "not_in_maintenance"], weighers: POLICIES.pack.weighers },
    },
  },
});
