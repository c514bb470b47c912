import { describe, expect, it } from "vitest";
import { OpAction, VmState } from "../contracts/common.ts";
import { canStart, LIFECYCLE, stateFromPower } from "./lifecycle.ts";

describe("lifecycle", () => {
  it("has a rule for every action, each ending in a real state", () => {
    for (const action of OpAction.options) {
      const rule = LIFECYCLE[action];
      expect(rule.from.length).toBeGreaterThan(0);
      expect(VmState.options).toContain(rule.after);
    }
  });

  it("refuses actions from states that make no sense", () => {
    expect(canStart("unpause", "running")).toBe(false);
    expect(canStart("pause", "stopped")).toBe(false);
    expect(canStart("resume", "running")).toBe(false);
    expect(canStart("migrate", "stopped")).toBe(false);
    expect(canStart("start", "running")).toBe(false);
  });

  it("allows delete from every state, so no VM record can be stranded", () => {
    for (const s of VmState.options) expect(canStart("delete", s)).toBe(true);
  });

  it("only start places, and only destroy and delete release capacity", () => {
    const placing = OpAction.options.filter((a) => LIFECYCLE[a].needsPlacement);
    const releasing = OpAction.options.filter((a) => LIFECYCLE[a].releases);
    expect(placing).toEqual(["start"]);
    expect(releasing.sort()).toEqual(["delete", "destroy"]);
  });

  it("maps power states", () => {
    expect(stateFromPower("absent")).toBe("destroyed");
    expect(stateFromPower("suspended")).toBe("suspended");
  });
});
