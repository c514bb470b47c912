import { describe, expect, it } from "vitest";
import { assertMigrationHost, fileCmd, xl } from "./commands.ts";

describe("xl argv builders", () => {
  it("address domains only by their usher-<vmId> name", () => {
    expect(xl.list()).toEqual(["xl", "list"]);
    expect(xl.list("vm-1")).toEqual(["xl", "list", "usher-vm-1"]);
    expect(xl.listLong()).toEqual(["xl", "list", "-l"]);
    expect(xl.info()).toEqual(["xl", "info"]);
    expect(xl.domid("vm-1")).toEqual(["xl", "domid", "usher-vm-1"]);
    expect(xl.create("/var/lib/usher/xen/vm-1.cfg")).toEqual(["xl", "create", "/var/lib/usher/xen/vm-1.cfg"]);
    expect(xl.shutdown("vm-1")).toEqual(["xl", "shutdown", "-F", "usher-vm-1"]);
    expect(xl.reboot("vm-1")).toEqual(["xl", "reboot", "-F", "usher-vm-1"]);
    expect(xl.destroy("vm-1")).toEqual(["xl", "destroy", "usher-vm-1"]);
    expect(xl.pause("vm-1")).toEqual(["xl", "pause", "usher-vm-1"]);
    expect(xl.unpause("vm-1")).toEqual(["xl", "unpause", "usher-vm-1"]);
    expect(xl.save("vm-1", "/s/xen/vm-1.save")).toEqual(["xl", "save", "usher-vm-1", "/s/xen/vm-1.save"]);
    expect(xl.restore("/s/xen/vm-1.save")).toEqual(["xl", "restore", "/s/xen/vm-1.save"]);
    expect(xl.restore("/s/xen/vm-1.save", { paused: true })).toEqual([
      "xl",
      "restore",
      "-p",
      "/s/xen/vm-1.save",
    ]);
    expect(xl.migrate("vm-1", "xen-2.example")).toEqual(["xl", "migrate", "usher-vm-1", "xen-2.example"]);
    expect(xl.migrate("vm-1", "10.0.0.7", { paused: true })).toEqual([
      "xl",
      "migrate",
      "-p",
      "usher-vm-1",
      "10.0.0.7",
    ]);
  });

  it("make hostile vmIds harmless: a name, never a domain id or an option, or they are refused", () => {
    // "3" would be domain id 3 to xl; as usher-3 it is a name.
    expect(xl.destroy("3")).toEqual(["xl", "destroy", "usher-3"]);
    for (const vmId of ["--help", "-h", "$(reboot)", 'a"b', "a b", "a;b", "../etc", "", "x\ny"]) {
      expect(() => xl.destroy(vmId), vmId).toThrow(expect.objectContaining({ code: "xen_unsafe_value" }));
      expect(() => xl.migrate(vmId, "h"), vmId).toThrow(
        expect.objectContaining({ code: "xen_unsafe_value" }),
      );
    }
  });

  it("refuse migration hosts the dom0 shell or ssh would read as more than a host", () => {
    for (const ok of ["xen-2", "xen-2.example.org", "10.0.0.7", "fe80::1", "::1"]) {
      expect(assertMigrationHost(ok)).toBe(ok);
    }
    for (const bad of ["-oProxyCommand=x", "a b", "h;reboot", "$(reboot)", "[::1]", "user@h", "h:22/x", ""]) {
      expect(() => xl.migrate("vm-1", bad), bad).toThrow(/migration host/);
    }
  });

  it("refuse config paths xl create would take as extra config, and relative or odd paths", () => {
    expect(() => xl.create("/x/a=b.cfg")).toThrow(/config path/);
    for (const bad of ["rel.cfg", "/a/../b", "/a b", "-f", "/a/$(x)"]) {
      expect(() => xl.create(bad), bad).toThrow(expect.objectContaining({ code: "xen_unsafe_value" }));
      expect(() => fileCmd.write(bad), bad).toThrow(expect.objectContaining({ code: "xen_unsafe_value" }));
    }
  });
});

describe("file helper argv", () => {
  it("are fixed programs with validated paths; contents only ever go on stdin", () => {
    expect(fileCmd.mkdir("/s/xen")).toEqual(["mkdir", "-p", "--", "/s/xen"]);
    expect(fileCmd.write("/s/xen/vm-1.cfg.tmp")).toEqual(["tee", "--", "/s/xen/vm-1.cfg.tmp"]);
    expect(fileCmd.read("/s/xen/vm-1.cfg")).toEqual(["cat", "--", "/s/xen/vm-1.cfg"]);
    expect(fileCmd.move("/s/a.tmp", "/s/a")).toEqual(["mv", "-f", "--", "/s/a.tmp", "/s/a"]);
    expect(fileCmd.remove("/s/a", "/s/b")).toEqual(["rm", "-f", "--", "/s/a", "/s/b"]);
    expect(fileCmd.existing("/s/a")).toEqual(["stat", "-c", "%n", "--", "/s/a"]);
    expect(fileCmd.metas("/s/xen")).toEqual([
      "grep",
      "-r",
      "-h",
      "--include=*.cfg",
      "-e",
      "^# usher-meta: ",
      "--",
      "/s/xen",
    ]);
    expect(fileCmd.saves("/s/xen")).toEqual([
      "find",
      "/s/xen",
      "-maxdepth",
      "1",
      "-type",
      "f",
      "-name",
      "*.save",
    ]);
    expect(fileCmd.overlay("/s/images/base/debian-12.qcow2", "/s/images/vm-1.qcow2")).toEqual([
      "qemu-img",
      "create",
      "-q",
      "-f",
      "qcow2",
      "-F",
      "qcow2",
      "-b",
      "/s/images/base/debian-12.qcow2",
      "/s/images/vm-1.qcow2",
    ]);
    expect(() => fileCmd.remove("/s/a", "/s/../etc")).toThrow(/not allowed/);
  });
});
