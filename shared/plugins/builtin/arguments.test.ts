import { describe, expect, it } from "vitest";
import type { Role } from "../../contracts/common.ts";
import type { VmSpec } from "../../contracts/vm.ts";
import type { ActionRequest } from "../types.ts";
import {
  type ArgumentRule,
  argumentPolicy,
  checkRules,
  decide,
  resolvePolicy,
  specificity,
} from "./arguments.ts";

const create = (
  spec: VmSpec,
  who: { project?: string; roles?: Role[] } = {},
  site = "local",
): ActionRequest => ({
  action: "start",
  principal: { subject: "alice", project: who.project ?? "p1", roles: who.roles ?? ["user"] },
  requestId: "req-1",
  project: who.project ?? "p1",
  site,
  spec,
  args: {},
  create: { name: "a" },
});

const RULES: ArgumentRule[] = [
  {
    defaults: { image: "debian-12" },
    limits: { vcpus: 4, memoryMiB: 8192, devices: { "nvidia-a100": 0 } },
    allowed: { images: ["debian-12", "ubuntu-24.04"], sites: ["local"] },
  },
  { scope: { projects: ["ml"] }, limits: { vcpus: 32, devices: { "nvidia-a100": 4 } } },
  { scope: { roles: ["operator"] }, limits: { vcpus: 16 } },
  { scope: { roles: ["admin"] }, limits: { vcpus: 64, memoryMiB: 512 * 1024 } },
  { scope: { projects: ["ml"], roles: ["admin"] }, allowed: { hosts: ["gpu-1", "gpu-2"] } },
];

describe("specificity", () => {
  const who = { project: "ml", roles: ["user"] as Role[] };
  it("ranks project and role over project over role over default, and skips rules that do not match", () => {
    expect(specificity(undefined, who)).toBe(0);
    expect(specificity({ roles: ["user"] }, who)).toBe(1);
    expect(specificity({ projects: ["ml"] }, who)).toBe(2);
    expect(specificity({ projects: ["ml"], roles: ["user"] }, who)).toBe(3);
    expect(specificity({ projects: ["other"] }, who)).toBeUndefined();
    expect(specificity({ projects: ["ml"], roles: ["admin"] }, who)).toBeUndefined();
  });
});

describe("resolvePolicy", () => {
  it("takes each field from the most specific rule that sets it and inherits the rest", () => {
    const p = resolvePolicy(RULES, { project: "ml", roles: ["user"] });
    expect(p.limits.vcpus).toBe(32); // the project's rule
    expect(p.limits.memoryMiB).toBe(8192); // not named by the project's rule: the default's
    expect(p.limits.devices).toEqual({ "nvidia-a100": 4 });
    expect(p.allowed.images).toEqual(["debian-12", "ubuntu-24.04"]);
    expect(p.defaults.image).toBe("debian-12");
  });

  it("lets a project rule beat a role rule, whatever their order", () => {
    expect(resolvePolicy(RULES, { project: "ml", roles: ["operator"] }).limits.vcpus).toBe(32);
    expect(resolvePolicy([...RULES].reverse(), { project: "ml", roles: ["operator"] }).limits.vcpus).toBe(32);
    expect(resolvePolicy(RULES, { project: "p1", roles: ["operator"] }).limits.vcpus).toBe(16);
    // Even when the role's rule is more generous: the project's 32, not the admin role's 64.
    expect(resolvePolicy(RULES, { project: "ml", roles: ["admin"] }).limits.vcpus).toBe(32);
    expect(resolvePolicy(RULES, { project: "p1", roles: ["admin"] }).limits.vcpus).toBe(64);
  });

  it("combines equally specific rules to the most permissive", () => {
    const p = resolvePolicy(
      [
        { scope: { roles: ["user"] }, limits: { vcpus: 2 }, allowed: { images: ["a"] } },
        { scope: { roles: ["operator"] }, limits: { vcpus: 8 }, allowed: { images: ["b"] } },
      ],
      { project: "p1", roles: ["user", "operator"] },
    );
    expect(p.limits.vcpus).toBe(8);
    expect(p.allowed.images).toEqual(["a", "b"]);
  });

  it("leaves everything open when no rule matches", () => {
    const p = resolvePolicy([{ scope: { projects: ["x"] }, limits: { vcpus: 1 } }], {
      project: "p1",
      roles: ["user"],
    });
    expect(p.limits.vcpus).toBeUndefined();
    expect(p.allowed.images).toBeUndefined();
  });
});

describe("decide", () => {
  it("fills defaults into a new VM's spec", () => {
    expect(decide(RULES, create({ vcpus: 2, memoryMiB: 1024 }))).toEqual({
      spec: { vcpus: 2, memoryMiB: 1024, image: "debian-12" },
    });
    // Nothing to fill: no adjustment at all.
    expect(decide(RULES, create({ vcpus: 2, memoryMiB: 1024, image: "ubuntu-24.04" }))).toBeUndefined();
  });

  it("vetoes a spec over a limit, naming the field", () => {
    expect(decide(RULES, create({ vcpus: 8, memoryMiB: 1024 }))).toEqual({
      veto: "vcpus 8 is over the limit of 4",
      details: { field: "vcpus", requested: 8, limit: 4 },
    });
    expect(decide(RULES, create({ vcpus: 1, memoryMiB: 16384 }))).toMatchObject({
      details: { field: "memoryMiB", limit: 8192 },
    });
    expect(decide(RULES, create({ vcpus: 8, memoryMiB: 1024 }, { project: "ml" }))).toMatchObject({
      spec: { vcpus: 8 },
    });
  });

  it("vetoes devices over a model's limit; 0 forbids the model; unnamed models are free", () => {
    expect(decide(RULES, create({ vcpus: 1, memoryMiB: 1024, devices: { "nvidia-a100": 1 } }))).toMatchObject(
      { details: { field: "devices.nvidia-a100", requested: 1, limit: 0 } },
    );
    expect(
      decide(RULES, create({ vcpus: 1, memoryMiB: 1024, devices: { "nvidia-a100": 4 } }, { project: "ml" })),
    ).not.toHaveProperty("veto");
    expect(decide(RULES, create({ vcpus: 1, memoryMiB: 1024, devices: { fpga: 2 } }))).not.toHaveProperty(
      "veto",
    );
  });

  it("vetoes an image or a site that is not allowed", () => {
    expect(decide(RULES, create({ vcpus: 1, memoryMiB: 1024, image: "win11" }))).toMatchObject({
      veto: expect.stringContaining("image win11 is not allowed"),
      details: { field: "image", allowed: ["debian-12", "ubuntu-24.04"] },
    });
    expect(decide(RULES, create({ vcpus: 1, memoryMiB: 1024 }, {}, "remote"))).toMatchObject({
      details: { field: "site", requested: "remote" },
    });
  });

  it("requires an image when images are restricted, unless a default names one", () => {
    const rules: ArgumentRule[] = [{ allowed: { images: ["debian-12"] } }];
    expect(decide(rules, create({ vcpus: 1, memoryMiB: 512 }))).toMatchObject({
      veto: "an image must be named (allowed: debian-12)",
      details: { field: "image", requested: null },
    });
    expect(
      decide([...rules, { defaults: { image: "debian-12" } }], create({ vcpus: 1, memoryMiB: 512 })),
    ).toEqual({ spec: { vcpus: 1, memoryMiB: 512, image: "debian-12" } });
  });

  it("requires a hypervisor when kinds are restricted, unless a default names one", () => {
    const rules: ArgumentRule[] = [{ allowed: { hypervisors: ["kvm"] } }];
    expect(decide(rules, create({ vcpus: 1, memoryMiB: 512 }))).toMatchObject({
      details: { field: "hypervisor", requested: null },
    });
    expect(decide(rules, create({ vcpus: 1, memoryMiB: 512, hypervisor: "xen" }))).toMatchObject({
      details: { field: "hypervisor", requested: "xen" },
    });
    expect(
      decide([...rules, { defaults: { hypervisor: "kvm" } }], create({ vcpus: 1, memoryMiB: 512 })),
    ).toEqual({ spec: { vcpus: 1, memoryMiB: 512, hypervisor: "kvm" } });
  });

  it("checks an explicit target host of a start or migration against the caller's project", () => {
    const vm = {
      ...create({ vcpus: 64, memoryMiB: 1024 }, { project: "ml", roles: ["admin"] }),
      create: undefined,
    };
    const migrate = (targetHostId?: string): ActionRequest => ({
      ...vm,
      action: "migrate",
      args: targetHostId ? { targetHostId } : {},
    });
    // Allowed: the scheduler, too, is narrowed to the allowed hosts.
    const narrowed = { args: { allowedHosts: ["gpu-1", "gpu-2"] } };
    expect(decide(RULES, migrate("gpu-2"))).toEqual(narrowed);
    expect(decide(RULES, migrate())).toEqual(narrowed);
    expect(decide(RULES, migrate("cpu-9"))).toMatchObject({
      veto: expect.stringContaining("host cpu-9 is not an allowed target"),
      details: { field: "targetHostId", requested: "cpu-9", allowed: ["gpu-1", "gpu-2"] },
    });
    // An existing VM's spec is not re-checked on start (64 vCPUs is over ml's limit of 32).
    expect(decide(RULES, vm)).toEqual(narrowed);
    expect(decide(RULES, { ...vm, create: { name: "a" } })).toMatchObject({ details: { field: "vcpus" } });
  });
});

describe("argumentPolicy", () => {
  it("refuses bad rules when the config is built", () => {
    expect(() => argumentPolicy({ rules: [{ limits: { vcpus: -1 } }] })).toThrow(/limits.vcpus/);
    expect(checkRules([{ scope: { projects: [] } }, { limits: { devices: { gpu: 1.5 } } }])).toEqual([
      "rules[0].scope.projects is empty",
      "rules[1].limits.devices.gpu must be a whole number ≥ 0",
    ]);
  });

  it("hooks starts and migrations only", () => {
    const p = argumentPolicy({ rules: RULES });
    expect(p.name).toBe("arguments");
    expect(Object.keys(p.hooks).sort()).toEqual(["migrate_request", "start_request"]);
  });
});
