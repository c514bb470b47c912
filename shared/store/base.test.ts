import { describe, expect, it } from "vitest";
import { batchGetItems, decodeCursor, encodeCursor, itemKey, updateOf } from "./base.ts";
import type { Db } from "./client.ts";
import type { Key } from "./keys.ts";

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

describe("batchGetItems", () => {
  // DynamoDB Local never leaves keys unprocessed (it does not throttle), so the retry is tested
  // against a stand-in client that does, as DynamoDB does under throttling or past 16 MB a call.
  it("asks 100 keys a call, retries what was left unprocessed, and answers each item once", async () => {
    const calls: number[] = [];
    let throttled = false;
    const send = async (cmd: { input: { RequestItems: Record<string, { Keys: Key[] }> } }) => {
      const keys = cmd.input.RequestItems.t!.Keys;
      calls.push(keys.length);
      const missing = (k: Key) => k.pk === "VM#gone";
      const served = throttled ? keys : keys.slice(0, 10);
      const left = throttled ? [] : keys.slice(10);
      throttled = true;
      return {
        Responses: { t: served.filter((k) => !missing(k)).map((k) => ({ ...k, id: k.pk.slice(3) })) },
        UnprocessedKeys: left.length ? { t: { Keys: left } } : {},
      };
    };
    const db = { table: "t", doc: { send } } as unknown as Db;
    const keys: Key[] = [
      ...Array.from({ length: 250 }, (_, i) => ({ pk: `VM#${i}`, sk: "VM" })),
      { pk: "VM#7", sk: "VM" },
      { pk: "VM#gone", sk: "VM" },
    ];
    const found = await batchGetItems<{ id: string }>(db, keys);
    expect(calls.sort((a, b) => a - b)).toEqual([51, 90, 100, 100]); // the 90 left over asked again
    expect(found.size).toBe(250);
    expect(found.get(itemKey({ pk: "VM#249", sk: "VM" }))?.id).toBe("249");
    expect(found.has(itemKey({ pk: "VM#gone", sk: "VM" }))).toBe(false);
  });
});
