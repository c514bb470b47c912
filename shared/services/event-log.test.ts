import { describe, expect, it } from "vitest";
import { newId } from "../ids.ts";
import { filterOf, idBounds } from "./event-log.ts";

describe("idBounds", () => {
  it("brackets ids by their creation time: since inclusive, until exclusive", () => {
    const before = new Date(Date.now() - 1).toISOString();
    const id = newId("ev");
    const after = new Date(Date.now() + 1).toISOString();
    const open = idBounds();
    expect(open.lo < id && id < open.hi).toBe(true);

    const around = idBounds(before, after);
    expect(around.lo < id && id < around.hi).toBe(true);
    expect(id < idBounds(after).lo).toBe(true); // created before `since`
    expect(id > idBounds(undefined, before).hi).toBe(true); // created at or after `until`
  });

  it("includes an id made in the very millisecond of since and excludes it at until", () => {
    const now = Date.now();
    const id = `ev-${idBounds(new Date(now).toISOString()).lo.slice(3)}0123456789abcdef`;
    expect(id >= idBounds(new Date(now).toISOString()).lo).toBe(true);
    expect(id > idBounds(undefined, new Date(now).toISOString()).hi).toBe(true);
  });
});

describe("filterOf", () => {
  it("matches a type exactly, or as a prefix when it ends with a dot", () => {
    expect(filterOf({ type: "vm.created" })).toMatchObject({
      expr: "#type = :type",
      values: { ":type": "vm.created" },
    });
    expect(filterOf({ type: "op." })).toMatchObject({ expr: "begins_with(#type, :type)" });
  });

  it("ands every filter given, the project first", () => {
    const f = filterOf({ requestId: "r", opId: "o", outcome: "rejected" }, "p1");
    expect(f.expr).toBe(
      "#project = :project AND #requestId = :requestId AND #opId = :opId AND #data.#outcome = :outcome",
    );
    expect(f.names).toMatchObject({ "#data": "data", "#outcome": "outcome", "#project": "project" });
  });

  it("matches the actor and a record's action exactly", () => {
    const f = filterOf({ type: "api.request", action: "vm.start", actor: "root" }, "p1");
    expect(f).toMatchObject({
      expr: "#project = :project AND #type = :type AND #actor = :actor AND #data.#action = :action",
      names: { "#actor": "actor", "#data": "data", "#action": "action" },
      values: { ":actor": "root", ":action": "vm.start" },
    });
    // Both data fields share one `#data` name.
    expect(filterOf({ outcome: "accepted", action: "vm.create" }).expr).toBe(
      "#data.#outcome = :outcome AND #data.#action = :action",
    );
  });

  it("has no expression when nothing is filtered", () => {
    expect(filterOf({}).expr).toBeUndefined();
  });
});
