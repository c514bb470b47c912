import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  addressedNics,
  buildDomainXml,
  type DomainXmlInput,
  domainName,
  domainUuid,
  parseDomainXml,
  parseUsherMetadata,
  xmlEscape,
  xmlUnescape,
} from "./xml.ts";

const recorded = (name: string) => readFileSync(join(import.meta.dirname, "testing/recorded", name), "utf8");

const base: DomainXmlInput = {
  vmId: "vm-01jd3k7x9q2w5e8r4t6y1u0i3o",
  vmName: "web-1",
  opId: "op-01jd3k7x9q2w5e8r4t6y1u0i3p",
  uuid: "abcdc620-1e35-58e1-bd6f-3ea8fabc07bf",
  spec: { vcpus: 2, memoryMiB: 128 },
  domainType: "kvm",
};
const invalid = { code: "invalid_input" };

describe("buildDomainXml", () => {
  it("writes a diskless domain with a deterministic name and Usher's metadata", () => {
    const xml = buildDomainXml(base);
    expect(xml).toContain(`<domain type="kvm">`);
    expect(xml).toContain("<name>usher-vm-01jd3k7x9q2w5e8r4t6y1u0i3o</name>");
    expect(xml).toContain(`<uuid>${base.uuid}</uuid>`);
    expect(xml).toContain(`<usher:vm xmlns:usher="https://usher.dev/xml/vm/1">`);
    expect(xml).toContain("<usher:id>vm-01jd3k7x9q2w5e8r4t6y1u0i3o</usher:id>");
    expect(xml).toContain("<usher:op>op-01jd3k7x9q2w5e8r4t6y1u0i3p</usher:op>");
    expect(xml).toContain("<usher:name>web-1</usher:name>");
    expect(xml).toContain(`<memory unit="MiB">128</memory>`);
    expect(xml).toContain("<vcpu>2</vcpu>");
    expect(xml).toContain(`<type arch="x86_64" machine="pc">hvm</type>`);
    expect(xml).toContain("<on_poweroff>destroy</on_poweroff>");
    expect(xml).toContain(`<serial type="pty">`);
    expect(xml).not.toContain("<disk");
    expect(xml).not.toContain("<interface");
    expect(buildDomainXml({ ...base, domainType: "qemu" })).toContain(`<domain type="qemu">`);
  });

  it("adds a qcow2 overlay disk (image in metadata) and bridged NICs with VLAN tags", () => {
    const xml = buildDomainXml({
      ...base,
      disk: { overlayPath: "/var/lib/libvirt/images/usher/overlays/usher-vm-1.qcow2", image: "debian-12" },
      nics: [{ bridge: "br0" }, { bridge: "ovsbr0", vlan: 42, mac: "52:54:00:12:34:56" }],
    });
    expect(xml).toContain(
      `<disk type="file" device="disk"><driver name="qemu" type="qcow2"/>` +
        `<source file="/var/lib/libvirt/images/usher/overlays/usher-vm-1.qcow2"/><target dev="vda" bus="virtio"/></disk>`,
    );
    expect(xml).toContain(`<boot dev="hd"/>`);
    expect(xml).toContain("<usher:image>debian-12</usher:image>");
    expect(xml).toContain(
      `<interface type="bridge"><source bridge="br0"/><model type="virtio"/></interface>`,
    );
    expect(xml).toContain(
      `<interface type="bridge"><source bridge="ovsbr0"/><mac address="52:54:00:12:34:56"/>` +
        `<vlan><tag id="42"/></vlan><virtualport type="openvswitch"/><model type="virtio"/></interface>`,
    );
  });

  it("records the VM's address in Usher's metadata and reads it back", () => {
    const network = { range: "net-a", address: "10.1.0.7", prefixLength: 24, gateway: "10.1.0.1", vlan: 42 };
    const xml = buildDomainXml({ ...base, network });
    expect(xml).toContain("<usher:range>net-a</usher:range>");
    expect(xml).toContain("<usher:address>10.1.0.7/24</usher:address>");
    expect(xml).toContain("<usher:gateway>10.1.0.1</usher:gateway>");
    expect(xml).toContain("<usher:vlan>42</usher:vlan>");
    expect(parseDomainXml(xml).usher?.network).toEqual(network);
    const plain = { range: "r", address: "192.168.0.9", prefixLength: 16 };
    expect(parseUsherMetadata(buildDomainXml({ ...base, network: plain }))?.network).toEqual(plain);
    expect(parseUsherMetadata(buildDomainXml(base))).not.toHaveProperty("network");
    for (const bad of [
      { ...plain, address: "10.0.0.256" },
      { ...plain, gateway: "x" },
      { ...plain, vlan: 0 },
    ])
      expect(() => buildDomainXml({ ...base, network: bad }), JSON.stringify(bad)).toThrow(
        expect.objectContaining(invalid),
      );
  });

  it("puts the address on the first NIC: MAC from the address, the range's VLAN (else the bridge's)", () => {
    const nics = [{ bridge: "ovsbr0", vlan: 7 }, { bridge: "br1" }];
    const tagged = { range: "net-a", address: "10.1.0.7", prefixLength: 24, vlan: 42 };
    expect(addressedNics("h1", nics, tagged)).toEqual([
      { bridge: "ovsbr0", mac: "02:00:0a:01:00:07", vlan: 42 },
      { bridge: "br1" },
    ]);
    const untagged = { range: "r", address: "192.168.255.1", prefixLength: 16 };
    expect(addressedNics("h1", nics, untagged)[0]).toEqual({
      bridge: "ovsbr0",
      mac: "02:00:c0:a8:ff:01",
      vlan: 7,
    });
    expect(addressedNics("h1", [{ bridge: "br0" }], untagged)).toEqual([
      { bridge: "br0", mac: "02:00:c0:a8:ff:01" },
    ]);
    expect(addressedNics("h1", nics, undefined)).toEqual(nics);
    expect(() => addressedNics("h1", undefined, tagged)).toThrow(
      expect.objectContaining({
        code: "not_supported",
        message: expect.stringMatching(/host h1 has no bridge/),
      }),
    );
    const xml = buildDomainXml({ ...base, nics: addressedNics("h1", nics, tagged), network: tagged });
    expect(xml).toContain(
      `<interface type="bridge"><source bridge="ovsbr0"/><mac address="02:00:0a:01:00:07"/>` +
        `<vlan><tag id="42"/></vlan><virtualport type="openvswitch"/><model type="virtio"/></interface>`,
    );
  });

  it("keeps hostile VM names as escaped text in metadata only", () => {
    for (const vmName of ["3", "--help", "$(reboot)", "<x>&", `"'`, "]]><evil/>"]) {
      const xml = buildDomainXml({ ...base, vmName });
      expect(xml).toContain("<name>usher-vm-01jd3k7x9q2w5e8r4t6y1u0i3o</name>");
      expect(xml).toContain(`<usher:name>${xmlEscape(vmName)}</usher:name>`);
      expect(xml.match(/<[a-z]/g)?.length).toBe(buildDomainXml(base).match(/<[a-z]/g)?.length);
      expect(parseDomainXml(xml).usher?.name).toBe(vmName);
    }
    expect(buildDomainXml({ ...base, vmName: "<x>&" })).toContain("<usher:name>&lt;x&gt;&amp;</usher:name>");
    // Characters XML cannot carry become U+FFFD; very long names are cut.
    expect(parseDomainXml(buildDomainXml({ ...base, vmName: "a\u0000b\u001bc" })).usher?.name).toBe(
      "a\uFFFDb\uFFFDc",
    );
    expect(parseDomainXml(buildDomainXml({ ...base, vmName: "x".repeat(5000) })).usher?.name).toHaveLength(
      256,
    );
  });

  it("refuses ids, sizes, paths and NIC settings outside their patterns", () => {
    const bad: Partial<DomainXmlInput>[] = [
      { vmId: "3" },
      { vmId: "--help" },
      { vmId: "vm-../../etc" },
      { vmId: "vm-ABC" },
      { vmId: "vm-a b" },
      { vmId: "op-123" },
      { opId: "vm-123" },
      { opId: "op-$(reboot)" },
      { uuid: "not-a-uuid" },
      { uuid: "ABCDC620-1E35-58E1-BD6F-3EA8FABC07BF" },
      { spec: { vcpus: 0, memoryMiB: 64 } },
      { spec: { vcpus: 1.5, memoryMiB: 64 } },
      { spec: { vcpus: 1, memoryMiB: 8 } },
      { domainType: "xen" as "kvm" },
      { disk: { overlayPath: "relative.qcow2" } },
      { disk: { overlayPath: "/a/../etc/shadow" } },
      { disk: { overlayPath: "/a/-rf.qcow2" } },
      { disk: { overlayPath: '/a/x".qcow2' } },
      { disk: { overlayPath: "/a/x.qcow2", image: "../x" } },
      { nics: [{ bridge: "br0; reboot" }] },
      { nics: [{ bridge: "a-very-long-bridge-name" }] },
      { nics: [{ bridge: "br0", vlan: 4095 }] },
      { nics: [{ bridge: "br0", mac: "01:00:5e:00:00:01" }] },
      { nics: [{ bridge: "br0", mac: "52:54:00:AA:BB:CC" }] },
    ];
    for (const over of bad)
      expect(() => buildDomainXml({ ...base, ...over }), JSON.stringify(over)).toThrow(
        expect.objectContaining(invalid),
      );
  });
});

describe("domain name and UUID", () => {
  it("derives both from the vm id", () => {
    expect(domainName("vm-abc")).toBe("usher-vm-abc");
    expect(() => domainName("3")).toThrow(expect.objectContaining(invalid));
    const u = domainUuid("vm-abc");
    expect(u).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(domainUuid("vm-abc")).toBe(u);
    expect(domainUuid("vm-abd")).not.toBe(u);
  });
});

describe("parsing libvirt's XML (recorded from libvirt 9.0)", () => {
  it("reads a running diskless domain's dumpxml", () => {
    expect(parseDomainXml(recorded("dumpxml-running.xml"))).toEqual({
      name: "usher-vm-test1",
      uuid: "5d7ad0a4-1d0b-4b33-9b0f-3c5c1f3e9a01",
      vcpus: 1,
      memoryMiB: 64,
      disks: [],
      usher: { vmId: "vm-test1", opId: "op-1", name: "a <x>& name" },
    });
  });

  it("reads the overlay of a domain with a disk, not its backing file", () => {
    expect(parseDomainXml(recorded("dumpxml-disk-running.xml"))).toEqual({
      name: "usher-vm-01jd3k7x9q2w5e8r4t6y1u0i3o",
      uuid: "abcdc620-1e35-58e1-bd6f-3ea8fabc07bf",
      vcpus: 2,
      memoryMiB: 128,
      disks: ["/var/lib/libvirt/images/usher/overlays/usher-vm-01jd3k7x9q2w5e8r4t6y1u0i3o.qcow2"],
      usher: {
        vmId: "vm-01jd3k7x9q2w5e8r4t6y1u0i3o",
        opId: "op-01jd3k7x9q2w5e8r4t6y1u0i3p",
        name: "web <1> & 'db'",
        image: "debian-12",
      },
    });
  });

  it("reads `virsh metadata` output (the bare element)", () => {
    expect(parseUsherMetadata(recorded("metadata.txt"))).toEqual({
      vmId: "vm-test1",
      opId: "op-1",
      name: "a <x>& name",
    });
  });

  it("ignores other applications' metadata and domains that are not Usher's", () => {
    const other = `<domain><name>web</name><uuid>5d7ad0a4-1d0b-4b33-9b0f-3c5c1f3e9a01</uuid>
      <metadata><app:vm xmlns:app="https://example.com/x"><app:id>vm-1</app:id><name>decoy</name></app:vm></metadata>
      <memory unit='GiB'>2</memory><vcpu placement='static' current='2'>4</vcpu></domain>`;
    expect(parseDomainXml(other)).toEqual({
      name: "web",
      uuid: "5d7ad0a4-1d0b-4b33-9b0f-3c5c1f3e9a01",
      vcpus: 2,
      memoryMiB: 2048,
      disks: [],
    });
    expect(parseUsherMetadata("<vm><id>not-an-id</id></vm>")).toBeUndefined();
    expect(parseUsherMetadata("")).toBeUndefined();
    expect(() => parseDomainXml("<domain><name>x</name></domain>")).toThrow(expect.objectContaining(invalid));
  });

  it("escapes and unescapes", () => {
    expect(xmlUnescape(xmlEscape(`<a href="x">&'</a>`))).toBe(`<a href="x">&'</a>`);
    expect(xmlUnescape("&#65;&#x42;&amp;lt;")).toBe("AB&lt;");
  });
});
