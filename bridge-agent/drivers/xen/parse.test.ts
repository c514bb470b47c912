/**
 * Parsers of xl output. The `xl list` and `xl info` fixtures are output of real Xen hosts as their
 * users published it (Xen 4.17 on arm64; x86 hosts); `xl list -l` and the `xl migrate` transcript are
 * put together from libxl's JSON types and xl_migrate.c's messages, since Xen cannot run here.
 */
import { describe, expect, it } from "vitest";
import {
  classifyMigrateFailure,
  classifyXlFailure,
  freeCapacity,
  hostResources,
  MigrationProgress,
  migrationPercent,
  parseXlInfo,
  parseXlList,
  parseXlListLong,
  powerStateOfFlags,
} from "./parse.ts";

const XL_LIST = `Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0 13036     8     r-----     398.7
guest-01                                     1  1024     2     -b----       6.0
Avignon-02                                   5  1024     2     -b----       0.5
vps0                                         7 24576     1     --p---       2.9
usher-vm-01jb8z--incoming                    9    64     1     --p---       0.0
a name with spaces                          12   512     1     ---s--      12.3
`;

// `xl info` of a Xen 4.17 host (values as published; the layout is xl's "%-23s: %s").
const XL_INFO = `host                   : zynqmp-generic
release                : 6.1.0-xilinx-v2024.1
version                : #1 SMP Thu Dec 21 07:00:11 UTC 2023
machine                : aarch64
nr_cpus                : 4
max_cpu_id             : 3
nr_nodes               : 1
cores_per_socket       : 1
threads_per_core       : 1
cpu_mhz                : 99.990
hw_caps                : 00000000:00000000:00000000:00000000:00000000:00000000:00000000:00000000
virt_caps              : hvm hvm_directio hap iommu_hap_pt_share vpmu gnttab-v1
total_memory           : 4095
free_memory            : 2529
sharing_freed_memory   : 0
sharing_used_memory    : 0
outstanding_claims     : 0
free_cpus              : 0
xen_major              : 4
xen_minor              : 17
xen_extra              : .0
xen_version            : 4.17.0
xen_caps               : xen-3.0-aarch64 xen-3.0-armv7l
xen_scheduler          : credit2
xen_pagesize           : 4096
platform_params        : virt_start=0x200000
xen_changeset          : Tue Dec 12 10:08:40 2023 +0100 git:38eebc6e5c-dirty
xen_commandline        : console=dtuart dtuart=serial0 dom0_mem=1500M dom0_max_vcpus=1 bootscrub=0 vwfi=native
cc_compiler            : aarch64-poky-linux-gcc (GCC) 12.2.0
cc_compile_by          : santraju
cc_compile_domain      :
cc_compile_date        : 2023-12-12
build_id               : 5e2952e1dd06c52a2a09ada7476333c48d88a285
xend_config_format     : 4
`;

const XL_LIST_LONG = `[
    {
        "domid": 3,
        "config": {
            "c_info": {
                "type": "hvm",
                "name": "usher-vm-01jb8z",
                "uuid": "6f1c2e0a-3b4d-4c5e-8f90-a1b2c3d4e5f6",
                "run_hotplug_scripts": "True"
            },
            "b_info": {
                "max_vcpus": 2,
                "avail_vcpus": [
                    0,
                    1
                ],
                "max_memkb": 1048576,
                "target_memkb": 1048576,
                "video_memkb": 8192,
                "shadow_memkb": 9216,
                "sched_params": {},
                "device_model_version": "qemu_xen",
                "type.hvm": {
                    "pae": "True",
                    "boot": "cd"
                }
            },
            "disks": [
                {
                    "pdev_path": "/var/lib/usher/images/vm-01jb8z.qcow2",
                    "vdev": "xvda",
                    "backend": "qdisk",
                    "format": "qcow2",
                    "readwrite": 1
                }
            ],
            "on_poweroff": "destroy",
            "on_reboot": "restart",
            "on_crash": "restart"
        }
    }
]
`;

const MIGRATE_STDERR = `Saving to migration stream new xl format (info 0x3/0x0/1733)
Loading new save file <incoming migration stream> (new xl fmt info 0x3/0x0/1733)
 Savefile contains xl domain config in JSON format
Parsing config from <saved>
xc: info: Saving domain 3, type x86 HVM
xc: info: Found x86 HVM domain from Xen 4.17
xc: info: Restoring domain
xc: info: Restore successful
xc: info: XenStore: mfn 0xfeffc, dom 0, evt 1
xc: info: Console: mfn 0xfefff, dom 0, evt 2
migration target: Transfer complete, requesting permission to start domain.
migration sender: Target has acknowledged transfer.
migration sender: Giving target permission to start.
migration target: Got permission, starting domain.
migration target: Domain started successsfully.
migration sender: Target reports successful startup.
Migration successful.
`;

describe("xl output parsers", () => {
  it("parse xl list rows, Domain-0 first, whatever the name", () => {
    const rows = parseXlList(XL_LIST);
    expect(rows.map((r) => [r.name, r.domid, r.memoryMiB, r.vcpus, r.flags])).toEqual([
      ["Domain-0", 0, 13036, 8, "r-----"],
      ["guest-01", 1, 1024, 2, "-b----"],
      ["Avignon-02", 5, 1024, 2, "-b----"],
      ["vps0", 7, 24576, 1, "--p---"],
      ["usher-vm-01jb8z--incoming", 9, 64, 1, "--p---"],
      ["a name with spaces", 12, 512, 1, "---s--"],
    ]);
    expect(rows[0]?.cpuSeconds).toBe(398.7);
    // The header with spaces for tabs (as it is often pasted) and an empty list.
    expect(parseXlList("Name  ID   Mem VCPUs      State   Time(s)\n")).toEqual([]);
    expect(() => parseXlList("garbage line\n")).toThrow(/unexpected xl list line/);
  });

  it("parse the UUID column of xl list -v", () => {
    const [row] = parseXlList(
      "guest-01                                     1  1024     2     -b----       6.0 6f1c2e0a-3b4d-4c5e-8f90-a1b2c3d4e5f6        -                -\n",
    );
    expect(row?.uuid).toBe("6f1c2e0a-3b4d-4c5e-8f90-a1b2c3d4e5f6");
  });

  it("map state letters: r/b/- running, p paused, s (shut down) or d (dying) stopped", () => {
    expect(["r-----", "-b----", "------"].map(powerStateOfFlags)).toEqual(["running", "running", "running"]);
    expect(powerStateOfFlags("--p---")).toBe("paused");
    expect(powerStateOfFlags("-bp---")).toBe("paused");
    expect(powerStateOfFlags("---s--")).toBe("stopped");
    expect(powerStateOfFlags("---ss-")).toBe("stopped"); // shut down for a save
    expect(powerStateOfFlags("-----d")).toBe("stopped");
  });

  it("parse xl info into keys and the figures the driver needs", () => {
    const info = parseXlInfo(XL_INFO);
    expect(info.get("xen_version")).toBe("4.17.0");
    expect(info.get("cc_compile_domain")).toBe("");
    expect(info.get("xen_commandline")).toContain("dom0_mem=1500M");
    expect(hostResources(info)).toEqual({ nrCpus: 4, totalMemoryMiB: 4095, freeMemoryMiB: 2529 });
    expect(() => hostResources(parseXlInfo("host : x\n"))).toThrow(/nr_cpus/);
  });

  it("count free vCPUs as CPUs less the guests' vCPUs (Domain-0 and dying ones aside)", () => {
    const rows = parseXlList(XL_LIST);
    const res = { nrCpus: 16, totalMemoryMiB: 65536, freeMemoryMiB: 30000 };
    // guests: 2 + 2 + 1 + 1 (the incoming one holds its vCPU too); the shut-down one holds none
    expect(freeCapacity(res, rows)).toEqual({ vcpus: 10, memoryMiB: 30000 });
  });

  it("parse xl list -l into identity and configured size", () => {
    expect(parseXlListLong(XL_LIST_LONG)).toEqual([
      {
        domid: 3,
        name: "usher-vm-01jb8z",
        uuid: "6f1c2e0a-3b4d-4c5e-8f90-a1b2c3d4e5f6",
        vcpus: 2,
        memoryMiB: 1024,
        disks: ["/var/lib/usher/images/vm-01jb8z.qcow2"],
      },
    ]);
    expect(parseXlListLong("[\n]\n")).toEqual([]);
    expect(parseXlListLong("")).toEqual([]);
    expect(() => parseXlListLong("{")).toThrow(/invalid JSON/);
    expect(() => parseXlListLong('[{"domid": 1}]')).toThrow(/unexpected xl list -l JSON/);
  });

  it("classify xl's failure messages", () => {
    expect(classifyXlFailure("usher-vm-1 is an invalid domain identifier (rc=-6)\n")).toBe(
      "domain_not_found",
    );
    expect(classifyXlFailure("Error: Domain '42' does not exist.\n")).toBe("domain_not_found");
    expect(
      classifyXlFailure("Can't get domid of domain name 'usher-x', maybe this domain does not exist.\n"),
    ).toBe("domain_not_found");
    expect(classifyXlFailure("Parsing config from /x.cfg\nfailed to free memory for the domain\n")).toBe(
      "insufficient_resources",
    );
    expect(
      classifyXlFailure(
        "xencall: error: Could not obtain handle on privileged command interface: No such file or directory\n" +
          "libxl: error: libxl.c:102:libxl_ctx_alloc: cannot open libxc handle: No such file or directory\n" +
          "cannot init xl context\n",
      ),
    ).toBe("host_unreachable");
    expect(classifyXlFailure("libxl: error: something else entirely\n")).toBeUndefined();
  });

  it("classify migration failures: ssh to the target, or the migration itself", () => {
    expect(classifyMigrateFailure("ssh: Could not resolve hostname xen-9: Name or service not known\n")).toBe(
      "host_unreachable",
    );
    expect(classifyMigrateFailure("ssh: connect to host 10.0.0.9 port 22: Connection refused\n")).toBe(
      "host_unreachable",
    );
    expect(
      classifyMigrateFailure(
        "migration target: Domain creation failed (code -3).\nMigration failed, resuming at sender.\n",
      ),
    ).toBe("migration_failed");
    expect(classifyMigrateFailure("usher-vm-1 is an invalid domain identifier (rc=-6)\n")).toBe(
      "domain_not_found",
    );
  });

  it("turn xl migrate's messages into rising percentages, across chunk boundaries", () => {
    const progress = new MigrationProgress();
    const seen: number[] = [];
    // fed in odd-sized chunks, as stderr arrives
    for (let i = 0; i < MIGRATE_STDERR.length; i += 37)
      seen.push(...progress.feed(MIGRATE_STDERR.slice(i, i + 37)));
    expect(seen).toEqual([5, 10, 15, 20, 75, 80, 85, 90, 95, 98, 100]);
    expect(migrationPercent("xc: progress: Frames iteration 1 of 5: 131072/262144   50%")).toBe(47);
    expect(migrationPercent("Parsing config from <saved>")).toBeUndefined();
  });
});
