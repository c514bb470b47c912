import { describe, expect, it } from "vitest";
import type { UsherConfig } from "../plugins/config.ts";
import { Plugins } from "../plugins/host.ts";
import type { Plugin } from "../plugins/types.ts";
import type { Filter } from "./filters.ts";
import { explain, placeOne, Snapshot } from "./pipeline.ts";
import { ALL_FILTERS, POLICIES } from "./policy.ts";
import { checkScheduler, SitePolicies } from "./site-policies.ts";
import { demand, host } from "./testing.ts";
import type { Weigher } from "./weighers.ts";

/** A plugin filter: only hosts whose `rack` label is not `r9` (the rack being serviced). */
const notRack9: Filter = {
  name: "not_rack9",
  reason: "host is in rack r9, under maintenance",
  active: () => true,
  accepts: (s, i) => s.labels[i]?.rack !== "r9",
  keep(s, q, slots, n) {
    let kept = 0;
    for (let p = 0; p < n; p++) if (this.accepts(s, slots[p]!, q)) slots[kept++] = slots[p]!;
    return kept;
  },
};
/** A plugin weigher: hosts in rack r1 first. */
const rack1: Weigher = {
  name: "rack1",
  description: "rack r1 first",
  active: () => true,
  score: (s, i) => (s.labels[i]?.rack === "r1" ? 1 : 0),
  add(s, q, slots, n, weight, scores) {
    for (let p = 0; p < n; p++) scores[p]! += weight * this.score(s, slots[p]!, q);
  },
};
const racks: Plugin = {
  name: "racks",
  runsIn: "control-plane",
  hooks: {},
  placement: { filters: { not_rack9: notRack9 }, weighers: { rack1 } },
};

const config = (scheduler: UsherConfig["scheduler"], plugins: Plugin[] = [racks]): UsherConfig => ({
  plugins,
  scheduler,
});

describe("site policies", () => {
  it("run plugins' filters and weighers, which name themselves in rejections and scores", () => {
    const site = new SitePolicies(
      config({
        policies: {
          racked: {
            filters: [...ALL_FILTERS, "not_rack9"],
            weighers: [{ name: "rack1", weight: 2 }, ...POLICIES.pack.weighers],
          },
        },
      }),
    );
    const { name, policy } = site.choose({ cluster: "racked", project: "p" });
    expect(name).toBe("racked");
    const s = new Snapshot([
      host("a", { labels: { rack: "r9" }, freeVcpus: 2, freeMemoryMiB: 2048 }),
      host("b", { labels: { rack: "r1" } }),
      host("c", { labels: { rack: "r2" }, freeVcpus: 4, freeMemoryMiB: 4096 }),
    ]);
    // Pack alone would take the tight r9 host, then c; the plugin stages take r1.
    expect(placeOne(s, demand(), POLICIES.pack).hostId).toBe("a");
    expect(placeOne(s, demand(), policy, site.registry).hostId).toBe("b");
    const none = placeOne(
      new Snapshot([host("a", { labels: { rack: "r9" } })]),
      demand(),
      policy,
      site.registry,
    );
    expect(none.hostId).toBeUndefined();
    expect(explain(none)).toMatch(/not_rack9 rejected 1 \(host is in rack r9, under maintenance\)/);
  });

  it("choose the cluster's policy, else the project's, else the site's default, else pack", () => {
    const site = new SitePolicies(
      config({ defaultPolicy: "spread", projects: { batch: "power-saving" } }, []),
    );
    expect(site.choose({ cluster: "load", project: "batch" }).name).toBe("load");
    expect(site.choose({ project: "batch" }).name).toBe("power-saving");
    expect(site.choose({ project: "web" }).name).toBe("spread");
    expect(new SitePolicies(config(undefined, [])).choose({ project: "web" }).name).toBe("pack");
    // A cluster's policy the config no longer defines is passed over, not fatal.
    expect(site.choose({ cluster: "gone", project: "batch" }).name).toBe("power-saving");
  });

  it("refuse, at start-up and naming each, unknown policies, stages and weights", () => {
    const problems = checkScheduler(
      config({
        defaultPolicy: "nope",
        projects: { web: "also-nope" },
        policies: {
          pack: POLICIES.pack,
          Bad: POLICIES.spread,
          thin: {
            filters: ["host_state", "memory", "no_such_filter"],
            weighers: [{ name: "rack1", weight: 1 }],
          },
          odd: {
            filters: [...ALL_FILTERS, "vcpus"],
            weighers: [
              { name: "no_such_weigher", weight: 1 },
              { name: "pack", weight: Number.NaN },
            ],
          },
        },
      }),
    );
    expect(problems).toEqual([
      'scheduler policy "pack": a built-in policy has this name',
      'scheduler policy "Bad": the name is not a short lower-case name',
      'scheduler policy "thin": unknown filter "no_such_filter"',
      expect.stringMatching(
        /^scheduler policy "thin": lacks the built-in filters hypervisor, vcpus, devices/,
      ),
      'scheduler policy "odd": a filter is listed twice',
      'scheduler policy "odd": unknown weigher "no_such_weigher"',
      'scheduler policy "odd": weigher pack needs a finite weight',
      'scheduler.defaultPolicy: unknown policy "nope"',
      'scheduler.projects.web: unknown policy "also-nope"',
    ]);
    // The plugin host runs the same check: a bad config never starts.
    expect(() => new Plugins(config({ defaultPolicy: "nope" }))).toThrow(
      /usher.config: scheduler.defaultPolicy: unknown policy "nope"/,
    );
  });

  it("refuse plugins' stages that shadow another's name or are registered under a name not theirs", () => {
    const copy: Plugin = { ...racks, name: "copy" };
    const shadow: Plugin = {
      name: "shadow",
      runsIn: "control-plane",
      hooks: {},
      placement: { filters: { memory: notRack9, wrong: notRack9 } },
    };
    expect(checkScheduler(config(undefined, [racks, copy, shadow]))).toEqual([
      "plugin copy: filter not_rack9 is already defined",
      "plugin copy: weigher rack1 is already defined",
      "plugin shadow: filter memory is already defined",
      "plugin shadow: filter wrong is named not_rack9",
    ]);
  });
});
