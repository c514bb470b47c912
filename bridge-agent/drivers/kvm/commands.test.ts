import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DriverError } from "../errors.ts";
import * as cmd from "./commands.ts";
import { codeOf, commandError, errorText, KvmError } from "./errors.ts";
import { defaultMigrationUris } from "./migrate.ts";
import {
  MigrationProgress,
  parseDominfo,
  parseDomjobinfo,
  parseDomstate,
  parseFreecell,
  parseLoadavg,
  parseNodeinfo,
  parseNodememstats,
  parseUuidList,
  toPowerState,
} from "./parse.ts";

const recorded = (name: string) => readFileSync(join(import.meta.dirname, "testing/recorded", name), "utf8");
const URI = "qemu:///system";
const UUID = "5d7ad0a4-1d0b-4b33-9b0f-3c5c1f3e9a01";
const V = ["env", "LC_ALL=C", "virsh", "-c", URI];
const invalid = expect.objectContaining({ code: "invalid_input" });

describe("virsh argv builders", () => {
  it("name the connection, run under the C locale and address domains by UUID", () => {
    expect(cmd.start(URI, UUID)).toEqual([...V, "start", UUID]);
    expect(cmd.start(URI, UUID, { forceBoot: true })).toEqual([...V, "start", "--force-boot", UUID]);
    expect(cmd.shutdown(URI, UUID)).toEqual([...V, "shutdown", "--mode", "acpi", UUID]);
    expect(cmd.destroy(URI, UUID)).toEqual([...V, "destroy", UUID]);
    expect(cmd.undefine(URI, UUID)).toEqual([
      ...V,
      "undefine",
      "--managed-save",
      "--snapshots-metadata",
      UUID,
    ]);
    expect(cmd.reboot(URI, UUID)).toEqual([...V, "reboot", UUID]);
    expect(cmd.pause(URI, UUID)).toEqual([...V, "suspend", UUID]);
    expect(cmd.unpause(URI, UUID)).toEqual([...V, "resume", UUID]);
    expect(cmd.managedSave(URI, UUID)).toEqual([...V, "managedsave", "--running", UUID]);
    expect(cmd.domstate(URI, UUID)).toEqual([...V, "domstate", "--reason", UUID]);
    expect(cmd.dumpxml(URI, UUID)).toEqual([...V, "dumpxml", UUID]);
    expect(cmd.metadata(URI, UUID)).toEqual([...V, "metadata", UUID, "https://usher.dev/xml/vm/1"]);
    expect(cmd.listAllUuids(URI)).toEqual([...V, "list", "--all", "--uuid"]);
    expect(cmd.nodeinfo(URI)).toEqual([...V, "nodeinfo"]);
    expect(cmd.loadavg()).toEqual(["env", "LC_ALL=C", "cat", "/proc/loadavg"]);
    expect(cmd.domjobinfo(URI, UUID)).toEqual([...V, "domjobinfo", UUID]);
    expect(cmd.domuuidOf(URI, "vm-abc")).toEqual([...V, "domuuid", "usher-vm-abc"]);
    expect(cmd.start("qemu+ssh://root@10.0.0.2:2202/system?no_verify=1", UUID)[4]).toBe(
      "qemu+ssh://root@10.0.0.2:2202/system?no_verify=1",
    );
  });

  it("define reads the XML from stdin through a fixed script; the URI is only its $1", () => {
    expect(cmd.define(URI)).toEqual([
      "env",
      "LC_ALL=C",
      "sh",
      "-c",
      'cat | virsh -c "$1" define /dev/stdin',
      "sh",
      URI,
    ]);
  });

  it("defineAndStart: the same fixed define, then start of the UUID, only if the define worked", () => {
    expect(cmd.defineAndStart(URI, UUID)).toEqual([
      "env",
      "LC_ALL=C",
      "sh",
      "-c",
      'cat | virsh -c "$1" define /dev/stdin && exec virsh -c "$1" start "$2"',
      "sh",
      URI,
      UUID,
    ]);
    expect(() => cmd.defineAndStart(URI, "--help")).toThrow(invalid);
    expect(cmd.DEFINED.test("Domain 'usher-vm-1' defined from /dev/stdin\n")).toBe(true);
    expect(cmd.DEFINED.test("Domain usher-vm-1 defined from /dev/stdin\n")).toBe(true);
    expect(cmd.DEFINED.test("")).toBe(false);
  });

  it("refuse hostile domains, vm ids and URIs before any argv exists", () => {
    for (const dom of ["3", "--help", "usher-vm-x", "$(reboot)", `${UUID} --force`, UUID.toUpperCase()]) {
      expect(() => cmd.start(URI, dom)).toThrow(invalid);
      expect(() => cmd.destroy(URI, dom)).toThrow(invalid);
    }
    for (const vmId of ["3", "--help", "$(reboot)", "<x>&", "vm-", "vm-a/../b"]) {
      expect(() => cmd.domuuidOf(URI, vmId)).toThrow(invalid);
    }
    for (const uri of [
      "--help",
      "qemu:///system --help",
      "qemu:///system;reboot",
      "qemu:///sys tem",
      "$(x)",
    ]) {
      expect(() => cmd.nodeinfo(uri)).toThrow(invalid);
      expect(() => cmd.define(uri)).toThrow(invalid);
    }
  });

  it("migrate: live, persistent, undefined at the source, with progress", () => {
    const dest = "qemu+ssh://10.0.0.2/system";
    expect(cmd.migrate(URI, UUID, { desturi: dest, migrateuri: "tcp://10.0.0.2", live: true })).toEqual([
      ...V,
      "migrate",
      "--live",
      "--persistent",
      "--undefinesource",
      "--verbose",
      UUID,
      dest,
      "tcp://10.0.0.2",
    ]);
    expect(cmd.migrate(URI, UUID, { desturi: dest, live: false, copyStorage: true })).toEqual([
      ...V,
      "migrate",
      "--persistent",
      "--undefinesource",
      "--copy-storage-inc",
      "--verbose",
      UUID,
      dest,
    ]);
    expect(
      cmd.migrate(URI, UUID, { desturi: dest, migrateuri: "tcp://x", live: true, offline: true }),
    ).toEqual([...V, "migrate", "--offline", "--persistent", "--undefinesource", UUID, dest]);
    expect(() => cmd.migrate(URI, UUID, { desturi: "--help", live: true })).toThrow(invalid);
    expect(() => cmd.migrate(URI, UUID, { desturi: dest, migrateuri: "tcp://x y", live: true })).toThrow(
      invalid,
    );
  });

  it("qemu-img and file commands take validated absolute paths", () => {
    expect(cmd.qemuImgCreate("/img/debian-12.qcow2", "/img/overlays/usher-vm-1.qcow2")).toEqual([
      "env",
      "LC_ALL=C",
      "qemu-img",
      "create",
      "-f",
      "qcow2",
      "-F",
      "qcow2",
      "-b",
      "/img/debian-12.qcow2",
      "/img/overlays/usher-vm-1.qcow2",
    ]);
    expect(cmd.removeFile("/img/x.qcow2")).toEqual(["env", "LC_ALL=C", "rm", "-f", "--", "/img/x.qcow2"]);
    for (const p of ["x.qcow2", "/img/../etc/passwd", "/img/-rf", "/img/a b", "/", "/img//x", "/img/./x"]) {
      expect(() => cmd.removeFile(p), p).toThrow(invalid);
      expect(() => cmd.qemuImgCreate(p, "/img/o.qcow2"), p).toThrow(invalid);
    }
  });

  it("default migration URIs: libvirt over SSH, memory straight to the target's address", () => {
    const t = (address: string) => defaultMigrationUris({ hostId: "h2", address, kind: "kvm" });
    expect(t("10.0.0.2")).toEqual({ desturi: "qemu+ssh://10.0.0.2/system", migrateuri: "tcp://10.0.0.2" });
    expect(t("kvm2.example:2202")).toEqual({
      desturi: "qemu+ssh://kvm2.example:2202/system",
      migrateuri: "tcp://kvm2.example",
    });
    expect(t("[fd00::2]:22")).toEqual({
      desturi: "qemu+ssh://[fd00::2]:22/system",
      migrateuri: "tcp://[fd00::2]",
    });
    expect(t("fd00::2")).toEqual({ desturi: "qemu+ssh://[fd00::2]/system", migrateuri: "tcp://[fd00::2]" });
    for (const bad of ["a b", "--help", "host:port", "x;reboot", ""])
      expect(() => t(bad), bad).toThrow(invalid);
  });
});

describe("parsers (outputs recorded from virsh 9.0)", () => {
  it("domstate → power state", () => {
    const p = (text: string, managedSave?: boolean) => toPowerState(parseDomstate(text), managedSave);
    expect(parseDomstate("running (booted)\n\n")).toEqual({ state: "running", reason: "booted" });
    expect(parseDomstate("shut off\n\n")).toEqual({ state: "shut off" });
    expect(p("running (booted)\n\n")).toBe("running");
    expect(p("running (restored)\n\n")).toBe("running");
    expect(p("paused (user)\n\n")).toBe("paused");
    expect(p("pmsuspended (unknown)\n")).toBe("paused");
    expect(p("shut off (destroyed)\n\n")).toBe("stopped");
    expect(p("shut off (unknown)\n\n")).toBe("stopped");
    expect(p("shut off (saved)\n\n")).toBe("suspended");
    // After a libvirtd restart a managed-saved domain says "unknown": dominfo tells.
    expect(p("shut off (unknown)\n\n", true)).toBe("suspended");
    expect(p("crashed (panicked)\n")).toBe("stopped");
    expect(p("in shutdown (user)\n")).toBe("running");
    expect(() => p("exploded (badly)")).toThrow(expect.objectContaining({ code: "command_failed" }));
    expect(() => parseDomstate("")).toThrow(KvmError);
  });

  it("list --all --uuid", () => {
    expect(parseUuidList(recorded("list-all-uuid.txt"))).toEqual([
      UUID,
      "6e8bd1b5-2e1c-4c44-8c10-4d6d2f4fab02",
    ]);
    expect(parseUuidList("\n")).toEqual([]);
    expect(() => parseUuidList("Id Name State\n")).toThrow(KvmError);
  });

  it("/proc/loadavg as a fraction of the host's CPUs", () => {
    expect(parseLoadavg("1.50 0.58 0.59 2/611 12345\n", 2)).toBe(0.75);
    expect(parseLoadavg("0.00 0.01 0.05 1/90 7", 8)).toBe(0);
    expect(() => parseLoadavg("", 2)).toThrow(/unrecognised/);
    expect(() => parseLoadavg("busy 1 1", 2)).toThrow(/unrecognised/);
    expect(() => parseLoadavg("1.0 1 1", 0)).toThrow(/unrecognised/);
  });

  it("nodeinfo, nodememstats and freecell", () => {
    expect(parseNodeinfo(recorded("nodeinfo.txt"))).toEqual({ cpus: 2, memoryMiB: 6106 });
    expect(parseNodememstats(recorded("nodememstats.txt"))).toEqual({
      totalMiB: 24105,
      freeMiB: 22261,
      availableMiB: 23532,
    });
    expect(parseFreecell(recorded("freecell.txt"))).toBe(4332);
    expect(parseFreecell(recorded("freecell-all.txt"))).toBe(4332);
    expect(() => parseNodeinfo("")).toThrow(KvmError);
  });

  it("dominfo: state, managed save, size", () => {
    expect(parseDominfo(recorded("dominfo-running.txt"))).toEqual({
      state: "running",
      managedSave: false,
      vcpus: 1,
      memoryMiB: 64,
    });
    expect(parseDominfo(recorded("dominfo-saved.txt"))).toMatchObject({
      state: "shut off",
      managedSave: true,
    });
    expect(parseDominfo(recorded("dominfo-shutoff.txt"))).toMatchObject({
      state: "shut off",
      managedSave: false,
    });
  });

  it("domjobinfo: idle, a migration setting up, a migration under way", () => {
    expect(parseDomjobinfo(recorded("domjobinfo-none.txt"))).toEqual({ type: "None" });
    expect(parseDomjobinfo(recorded("domjobinfo-migration-setup.txt"))).toEqual({
      type: "Unbounded",
      operation: "Outgoing migration",
    });
    const job = parseDomjobinfo(recorded("domjobinfo-migration.txt"));
    expect(job).toMatchObject({ type: "Unbounded", operation: "Outgoing migration" });
    expect(job.percent).toBeCloseTo(73.13, 1);
  });

  it("migrate --verbose progress, in whatever chunks stderr arrives", () => {
    const text = recorded("migrate-verbose.stderr");
    expect(text).toBe("\rMigration: [ 37 %]\rMigration: [ 99 %]\rMigration: [100 %]");
    const whole = new MigrationProgress();
    expect(whole.feed(text)).toEqual([37, 99, 100]);
    const bytes = new MigrationProgress();
    expect([...text].flatMap((c) => bytes.feed(c))).toEqual([37, 99, 100]);
    const p = new MigrationProgress();
    expect(p.feed("\rMigration: [ 50.12 %]\rMigration: [ 40 %]\rMigr")).toEqual([50.12]); // never backwards
    expect(p.feed("ation: [100 %]")).toEqual([100]);
    expect(p.percent).toBe(100);
    expect(new MigrationProgress().feed("error: operation failed\n")).toEqual([]);
  });
});

describe("virsh error text → codes", () => {
  it("maps the errors the driver branches on (recorded stderr)", () => {
    expect(codeOf("error: failed to get domain 'usher-vm-01jd3k7x9q2w5e8r4t6y1u0i3o'\n")).toBe(
      "domain_not_found",
    );
    expect(codeOf("error: failed to get domain '00000000-0000-4000-8000-000000000000'\n")).toBe(
      "domain_not_found",
    );
    expect(
      codeOf(
        "error: Failed to resume domain '5d7ad0a4-1d0b-4b33-9b0f-3c5c1f3e9a01'\nerror: Requested operation is not valid: domain is already running\n",
      ),
    ).toBe("invalid_state");
    expect(
      codeOf(
        "error: Failed to destroy domain 'x'\nerror: Requested operation is not valid: domain is not running\n",
      ),
    ).toBe("invalid_state");
    expect(codeOf("error: Domain is already active\n")).toBe("invalid_state");
    expect(codeOf("error: Failed to connect socket to '/nope': No such file or directory\n")).toBe(
      "host_unreachable",
    );
    expect(
      codeOf(
        "qemu-img: /img/overlays/x.qcow2: Could not open '/img/nope.qcow2': No such file or directory\nCould not open backing image.\n",
      ),
    ).toBe("image_not_found");
    expect(
      codeOf("error: internal error: qemu unexpectedly closed the monitor: Cannot allocate memory"),
    ).toBe("insufficient_resources");
    expect(
      codeOf(
        "error: Failed to define domain from /dev/stdin\nerror: operation failed: domain 'usher-vm-test1' already exists with uuid 5d7ad0a4-1d0b-4b33-9b0f-3c5c1f3e9a01\n",
      ),
    ).toBeUndefined();
  });

  it("builds DriverErrors for mapped text, KvmError (driver_failed upstream) for the rest", () => {
    const e = commandError("virsh start", "h1", "error: Failed to start domain 'x'\nerror: weird\n");
    expect(e).toBeInstanceOf(KvmError);
    expect(e).toMatchObject({
      code: "command_failed",
      message: "virsh start on host h1 failed: Failed to start domain 'x': weird",
    });
    expect(commandError("virsh x", "h1", "error: failed to get domain 'y'")).toBeInstanceOf(DriverError);
    // In a migration, "not valid" and unknown errors are migration_failed; "gone" and "unreachable" stay.
    const mig = (text: string) => commandError("virsh migrate", "h1", text, "migration_failed").code;
    expect(mig("error: Requested operation is not valid: domain is not running")).toBe("migration_failed");
    expect(mig("error: internal error: unable to execute QEMU command 'migrate'")).toBe("migration_failed");
    expect(mig("error: failed to get domain 'x'")).toBe("domain_not_found");
    expect(mig("error: Failed to connect socket to '/nope': No such file or directory")).toBe(
      "host_unreachable",
    );
    expect(errorText("no prefix here\n")).toBe("no prefix here");
  });
});
