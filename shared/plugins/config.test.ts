import { describe, expect, it } from "vitest";
import { checkConfig, defineConfig, on } from "./config.ts";
import type { Plugin } from "./types.ts";

const noisy: Plugin = {
  name: "noisy",
  runsIn: "control-plane",
  hooks: { start: async () => {}, destroy: async () => {}, start_request: () => undefined },
};

describe("on", () => {
  it("registers a plugin for the events named only, keeping its name and place", () => {
    const p = on(["start"], noisy, { timeoutMs: 500 });
    expect(Object.keys(p.hooks)).toEqual(["start"]);
    expect(p).toMatchObject({ name: "noisy", runsIn: "control-plane", timeoutMs: 500 });
    expect(Object.keys(noisy.hooks)).toHaveLength(3); // the plugin itself is untouched
  });

  it("refuses an event the plugin has no hook for, or none at all", () => {
    expect(() => on(["migrate"], noisy)).toThrow(/noisy has no hook for migrate/);
    expect(() => on([], noisy)).toThrow(/for no event/);
  });
});

describe("defineConfig", () => {
  it("names every problem of a config at once", () => {
    const problems = checkConfig({
      plugins: [noisy, noisy, { ...noisy, name: "Bad Name", timeoutMs: 0 }],
      notifications: { maxAttempts: 0, retryDelaySeconds: -1 },
      scheduler: { defaultPolicy: "nope" },
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        "plugin noisy is listed twice",
        expect.stringContaining("Bad Name"),
        expect.stringContaining("timeoutMs"),
        expect.stringContaining("maxAttempts"),
        expect.stringContaining("retryDelaySeconds"),
        expect.stringContaining("nope"),
      ]),
    );
    expect(() => defineConfig({ plugins: [noisy, noisy] })).toThrow(/listed twice/);
  });
});
