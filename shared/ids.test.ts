import { decodeTime, isValid } from "ulid";
import { describe, expect, it } from "vitest";
import { newId } from "./ids.ts";

describe("newId", () => {
  it("is a prefixed, lower-case ULID of the current time", () => {
    const before = Date.now();
    const id = newId("vm");
    expect(id).toMatch(/^vm-[0-9a-hjkmnp-tv-z]{26}$/);
    const ulid = id.slice(3).toUpperCase();
    expect(isValid(ulid)).toBe(true);
    expect(decodeTime(ulid)).toBeGreaterThanOrEqual(before);
    expect(decodeTime(ulid)).toBeLessThanOrEqual(Date.now());
  });

  it("never repeats, across many refills of its random pool", () => {
    const ids = Array.from({ length: 50_000 }, () => newId("op"));
    expect(new Set(ids).size).toBe(ids.length);
    // The random part is spread: every character of the alphabet shows up at the last position.
    expect(new Set(ids.map((id) => id.at(-1))).size).toBe(32);
  });
});
