import { describe, expect, it } from "vitest";
import {
  addressedVif,
  baseImagePath,
  buildXlConfig,
  domainName,
  macFor,
  parseConfigMeta,
  vmIdOfDomain,
  type XlConfigInput,
  xenPaths,
  xlString,
} from "./config.ts";

const UUID = "6f1c2e0a-3b4d-4c5e-8f90-a1b2c3d4e5f6";
const input = (over: Partial<XlConfigInput> = {}): XlConfigInput => ({
  vmId: "vm-01jb8z",
  vmName: "web-1",
  opId: "op-01jb90",
  uuid: UUID,
  spec: { vcpus: 2, memoryMiB: 1024 },
  stateDir: "/var/lib/usher",
  ...over,
});

describe("xl domain config", () => {
  it("names the domain usher-<vmId> and sets size, identity and lifecycle actions", () => {
    expect(buildXlConfig(input())).toBe(
      [
        "# Usher-managed Xen domain, written by the bridge agent: do not edit.",
        `# usher-meta: {"v":1,"vmId":"vm-01jb8z","opId":"op-01jb90","vmName":"web-1","uuid":"${UUID}","vcpus":2,"memoryMiB":1024}`,
        'name = "usher-vm-01jb8z"',
        `uuid = "${UUID}"`,
        'type = "hvm"',
        "memory = 1024",
        "maxmem = 1024",
        "vcpus = 2",
        'on_poweroff = "destroy"',
        'on_reboot = "restart"',
        'on_crash = "restart"',
        "",
      ].join("\n"),
    );
  });

  it("adds a qcow2 overlay disk for an image and a NIC for a bridge or an OVS VLAN", () => {
    const text = buildXlConfig(
      input({ spec: { vcpus: 1, memoryMiB: 512, image: "debian-12" }, network: { bridge: "xenbr0" } }),
    );
    expect(text).toContain(
      'disk = [ "format=qcow2, vdev=xvda, access=rw, target=/var/lib/usher/images/vm-01jb8z.qcow2" ]',
    );
    expect(text).toContain(`vif = [ "bridge=xenbr0, mac=${macFor(UUID)}" ]`);
    const vlan = buildXlConfig(input({ network: { bridge: "ovsbr0", vlan: 120, mac: "00:16:3e:0a:0b:0c" } }));
    expect(vlan).toContain('vif = [ "bridge=ovsbr0.120, mac=00:16:3e:0a:0b:0c, script=vif-openvswitch" ]');
    expect(macFor(UUID)).toMatch(/^00:16:3e:[0-7][0-9a-f](:[0-9a-f]{2}){2}$/);
  });

  it("gives a VM with an address a vif on the guest bridge with ip=, the address's MAC and the range's VLAN", () => {
    const network = { range: "net-a", address: "10.1.0.7", prefixLength: 24, gateway: "10.1.0.1", vlan: 42 };
    const vif = addressedVif("x1", { bridge: "ovsbr0", vlan: 7 }, network);
    expect(vif).toEqual({ bridge: "ovsbr0", vlan: 42, mac: "02:00:0a:01:00:07", ip: "10.1.0.7" });
    const text = buildXlConfig(input({ network: vif, vmNetwork: network }));
    expect(text).toContain(
      'vif = [ "bridge=ovsbr0.42, mac=02:00:0a:01:00:07, ip=10.1.0.7, script=vif-openvswitch" ]',
    );
    expect(parseConfigMeta(text)?.network).toEqual(network);
    const untagged = { range: "r", address: "192.168.0.9", prefixLength: 16 };
    expect(buildXlConfig(input({ network: addressedVif("x1", { bridge: "xenbr0" }, untagged) }))).toContain(
      'vif = [ "bridge=xenbr0, mac=02:00:c0:a8:00:09, ip=192.168.0.9" ]',
    );
    expect(parseConfigMeta(buildXlConfig(input()))).not.toHaveProperty("network");
    expect(() => addressedVif("x1", undefined, network)).toThrow(
      expect.objectContaining({
        code: "not_supported",
        message: expect.stringMatching(/host x1 has no bridge/),
      }),
    );
    expect(() => buildXlConfig(input({ network: { bridge: "br0", ip: "10.0.0.1 evil" } }))).toThrow(/ip/);
    expect(() => buildXlConfig(input({ vmNetwork: { ...untagged, address: "nope" } }))).toThrow(/network/);
  });

  it("writes pvh guests with their kernel, and refuses pvh without one", () => {
    expect(
      buildXlConfig(input({ guestType: "pvh", kernel: "/usr/lib/grub-xen/grub-x86_64-xen.bin" })),
    ).toContain('kernel = "/usr/lib/grub-xen/grub-x86_64-xen.bin"');
    expect(() => buildXlConfig(input({ guestType: "pvh" }))).toThrow(/pvh guest without a kernel/);
  });

  it("keeps a hostile VM name inside the meta comment, escaped, and reads it back", () => {
    for (const vmName of ['a"b', 'x\nname = "evil"', "$(reboot)", "--help", "3", "é\u2028\0"]) {
      const text = buildXlConfig(input({ vmName }));
      const lines = text.split("\n");
      expect(lines).toHaveLength(12); // no line was added
      expect(lines.filter((l) => l.startsWith("name = "))).toEqual(['name = "usher-vm-01jb8z"']);
      expect(text).toMatch(/^[\x20-\x7e\n]*$/); // printable ASCII only
      expect(parseConfigMeta(text)?.vmName).toBe(vmName);
    }
  });

  it("refuses vmIds, paths and values that are unsafe in a name, path or quoted string", () => {
    for (const vmId of ["", "--help", "-x", "a b", "$(reboot)", 'a"b', "../x", "a/b", "a--incoming", "é"]) {
      expect(() => buildXlConfig(input({ vmId })), vmId).toThrow(
        expect.objectContaining({ code: "xen_unsafe_value" }),
      );
    }
    for (const stateDir of ["relative", "/a/../b", "/a b", "/a;b", "/a\nb", "/"]) {
      expect(() => xenPaths(stateDir, "vm-1"), stateDir).toThrow(/not allowed/);
    }
    expect(() => baseImagePath("/srv", "../etc/passwd")).toThrow(/image/);
    expect(() => buildXlConfig(input({ uuid: "not-a-uuid" }))).toThrow(/uuid/);
    expect(() => buildXlConfig(input({ spec: { vcpus: 1.5, memoryMiB: 64 } }))).toThrow(/vcpus/);
    expect(() => buildXlConfig(input({ network: { bridge: 'br0"' } }))).toThrow(/bridge/);
    expect(() => buildXlConfig(input({ network: { bridge: "br0", vlan: 4095 } }))).toThrow(/vlan/);
    expect(() => xlString('say "hi"', "x")).toThrow();
    expect(() => xlString("back\\slash", "x")).toThrow();
    expect(xlString("it's fine", "x")).toBe(`"it's fine"`);
  });

  it("maps vmIds to domain names and back, but not xl's migration names or foreign domains", () => {
    expect(domainName("3")).toBe("usher-3"); // never all digits, so never read as a domain id
    expect(vmIdOfDomain("usher-vm-01jb8z")).toBe("vm-01jb8z");
    expect(vmIdOfDomain("usher-vm-01jb8z--incoming")).toBeUndefined();
    expect(vmIdOfDomain("usher-vm-01jb8z--migratedaway")).toBeUndefined();
    expect(vmIdOfDomain("Domain-0")).toBeUndefined();
    expect(vmIdOfDomain("legacy-web")).toBeUndefined();
  });

  it("keeps configs and saves under <stateDir>/xen and disks under <stateDir>/images", () => {
    expect(xenPaths("/var/lib/usher", "vm-1")).toEqual({
      dir: "/var/lib/usher/xen",
      cfg: "/var/lib/usher/xen/vm-1.cfg",
      cfgTmp: "/var/lib/usher/xen/vm-1.cfg.tmp",
      save: "/var/lib/usher/xen/vm-1.save",
      saveTmp: "/var/lib/usher/xen/vm-1.save.tmp",
      overlay: "/var/lib/usher/images/vm-1.qcow2",
    });
    expect(baseImagePath("/var/lib/usher", "ubuntu-24.04")).toBe(
      "/var/lib/usher/images/base/ubuntu-24.04.qcow2",
    );
  });

  it("reads no meta from configs that are not Usher's or are damaged", () => {
    expect(parseConfigMeta('name = "legacy"\nmemory = 512\n')).toBeUndefined();
    expect(parseConfigMeta("# usher-meta: {not json\n")).toBeUndefined();
    expect(parseConfigMeta('# usher-meta: {"v":2}\n')).toBeUndefined();
  });
});
