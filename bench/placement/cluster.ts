/**
 * A generated site with realistic mixed specs, for the placement-core timings: general, compute and
 * memory-heavy CPU hosts with GPU hosts among them, two hypervisor kinds, a few hosts out of service,
 * zone labels; VMs from a flavour list (mostly small, a long tail of large ones, some with GPUs),
 * some pinned to a hypervisor or a zone, some in anti-affinity or soft-affinity groups.
 */
import type { Demand, HostSnapshot } from "../../shared/scheduler/types.ts";
import { random } from "../lib/random.ts";

const GIB = 1024;

type Shape = { vcpus: number; memoryGiB: number; devices?: Record<string, number> };

/** Host shapes by share; vCPUs are already the limit (2× overcommit on CPU hosts, none on GPU hosts). */
const HOST_SHAPES: readonly (readonly [Shape, number])[] = [
  [{ vcpus: 32, memoryGiB: 64 }, 10],
  [{ vcpus: 64, memoryGiB: 128 }, 20],
  [{ vcpus: 128, memoryGiB: 256 }, 30],
  [{ vcpus: 192, memoryGiB: 384 }, 20],
  [{ vcpus: 128, memoryGiB: 512 }, 8],
  [{ vcpus: 48, memoryGiB: 192, devices: { "nvidia-t4": 4 } }, 8],
  [{ vcpus: 128, memoryGiB: 1024, devices: { "nvidia-a100": 8 } }, 4],
];

/** VM flavours by share: about 6% ask for GPUs. */
const FLAVOURS: readonly (readonly [Shape, number])[] = [
  [{ vcpus: 1, memoryGiB: 2 }, 10],
  [{ vcpus: 2, memoryGiB: 4 }, 20],
  [{ vcpus: 2, memoryGiB: 8 }, 10],
  [{ vcpus: 4, memoryGiB: 8 }, 15],
  [{ vcpus: 4, memoryGiB: 16 }, 15],
  [{ vcpus: 8, memoryGiB: 16 }, 8],
  [{ vcpus: 8, memoryGiB: 32 }, 8],
  [{ vcpus: 16, memoryGiB: 64 }, 5],
  [{ vcpus: 32, memoryGiB: 128 }, 2],
  [{ vcpus: 64, memoryGiB: 256 }, 1],
  [{ vcpus: 8, memoryGiB: 32, devices: { "nvidia-t4": 1 } }, 3],
  [{ vcpus: 16, memoryGiB: 64, devices: { "nvidia-t4": 2 } }, 1],
  [{ vcpus: 16, memoryGiB: 120, devices: { "nvidia-a100": 1 } }, 1],
  [{ vcpus: 64, memoryGiB: 480, devices: { "nvidia-a100": 4 } }, 0.5],
  [{ vcpus: 128, memoryGiB: 960, devices: { "nvidia-a100": 8 } }, 0.3],
];

const ZONES = ["a", "b", "c"] as const;

/** `n` hosts, empty, ids in slot order ("host-00042"). */
export function generateHosts(n: number, seed = 1): HostSnapshot[] {
  const r = random(seed);
  return Array.from({ length: n }, (_, i): HostSnapshot => {
    const shape = r.pick(HOST_SHAPES);
    const devices = { ...shape.devices };
    const reported = r.next() < 0.9;
    return {
      id: `host-${String(i).padStart(5, "0")}`,
      kind: r.next() < 0.85 ? "kvm" : "xen",
      state: r.pick([
        ["enabled", 97],
        ["disabled", 1],
        ["draining", 1],
        ["down", 1],
      ] as const),
      labels: { zone: ZONES[i % ZONES.length]!, rack: `r${Math.floor(i / 40)}` },
      limitVcpus: shape.vcpus,
      limitMemoryMiB: shape.memoryGiB * GIB,
      limitDevices: devices,
      freeVcpus: shape.vcpus,
      freeMemoryMiB: shape.memoryGiB * GIB,
      freeDevices: { ...devices },
      ...(reported ? { load: r.next() } : {}),
    };
  });
}

/** An endless stream of VM demands for a site of `hosts` hosts; the same seed gives the same stream. */
export function demandStream(hosts: number, seed = 2): () => Demand {
  const r = random(seed);
  const groups = Math.max(4, Math.floor(hosts / 10));
  let seq = 0;
  return () => {
    const f = r.pick(FLAVOURS);
    const d: Demand = {
      vcpus: f.vcpus,
      memoryMiB: f.memoryGiB * GIB,
      devices: { ...f.devices },
      vmId: `vm-${seq++}`,
    };
    const u = r.next();
    if (u < 0.2) d.hypervisor = "kvm";
    else if (u < 0.25) d.hypervisor = "xen";
    if (r.next() < 0.1) d.requiredLabels = { zone: ZONES[r.int(ZONES.length)]! };
    const g = r.next();
    if (g < 0.05) d.antiAffinityGroup = `spread-${r.int(groups)}`;
    else if (g < 0.1) d.softAffinityGroup = `near-${r.int(groups)}`;
    return d;
  };
}
