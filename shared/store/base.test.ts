import { describe, expect, it } from "vitest";
import { decodeCursor, encodeCursor, updateOf } from "./base.ts";

describe("updateOf", () => {
  it("builds placeholders for every name and value, including map paths and increments", () => {
    const u = updateOf(
      "t",
      { pk: "A", sk: "B" },
      { set: { state: "x" }, inc: { "freeDevices.a100": -2 }, remove: ["hostId"] },
      { expr: "#s = :s", names: { "#s": "state" }, values: { ":s": "y" } },
    );
    expect(u.UpdateExpression).toBe("SET #u0 = :u1, #u2.#u3 = if_not_exists(#u2.#u3, :u4) + :u5 REMOVE #u6");
    expect(u.ExpressionAttributeNames).toEqual({
      "#s": "state",
      "#u0": "state",
      "#u2": "freeDevices",
      "#u3": "a100",
      "#u6": "hostId",
    });
    expect(u.ExpressionAttributeValues).toEqual({ ":s": "y", ":u1": "x", ":u4": 0, ":u5": -2 });
    expect(u.ConditionExpression).toBe("#s = :s");
  });
});

describe("cursors", () => {
  it("round-trips and refuses garbage", () => {
    const key = { pk: "VM#1", sk: "VM", gsi1pk: "PROJ#p#VM", gsi1sk: "vm-1" };
    expect(decodeCursor(encodeCursor(key) ?? undefined)).toEqual(key);
    expect(encodeCursor(undefined)).toBeNull();
    expect(() => decodeCursor("%%%")).toThrow(/cursor/);
  });
});
