/**
 * Workload traces for the placement-quality replay: the Alibaba "openb" production trace, read from
 * beside the project (never copied into it: see its SOURCE.md), or a generated one of the same shape
 * when that folder is absent.
 *
 * How the trace maps onto VMs and hosts:
 * - vCPUs are counted in thousandths (the trace's `cpu_milli`, so 11,908 is 11.908 vCPUs): requests
 *   are not whole vCPUs, and whole numbers keep every release exact. Weighers use ratios, so the
 *   unit does not change a decision.
 * - GPUs are one device kind, `gpu`, with the host's model as its `gpu-model` label: none of the
 *   default or CPU-heavy workloads names a model (`gpu_spec` is empty), so any GPU serves, and a
 *   `Demand` cannot say "any model" (its devices are by model, all required).
 * - A fractional GPU (`gpu_milli` < 1000) takes one whole device: a VM gets whole devices.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Demand, HostSnapshot } from "../../shared/scheduler/types.ts";
import { random } from "../lib/random.ts";

export type Workload = { demand: Demand; arriveS: number; departS: number };

export type Trace = {
  /** "default", "cpu050", … or "generated". */
  name: string;
  hosts: HostSnapshot[];
  /** In arrival order (file order among equal times). */
  workloads: Workload[];
};

/** From the project root, `../shared/bench-data/alibaba-openb`. */
export const OPENB_DIR = resolve(import.meta.dirname, "../../../shared/bench-data/alibaba-openb");

/** The default workload list and the samples weighing CPU-only work more heavily. */
export const OPENB_VARIANTS = ["default", "cpu050", "cpu100", "cpu250"] as const;

export const GPU = "gpu";

function rows(path: string): Record<string, string>[] {
  const [head, ...lines] = readFileSync(path, "utf8").trim().split(/\r?\n/);
  const columns = head!.split(",");
  return lines.map((line) => {
    const cells = line.split(",");
    return Object.fromEntries(columns.map((c, i) => [c, cells[i] ?? ""]));
  });
}

function host(id: string, vcpusMilli: number, memoryMiB: number, gpus: number, model: string): HostSnapshot {
  const devices: Record<string, number> = gpus > 0 ? { [GPU]: gpus } : {};
  return {
    id,
    kind: "kvm",
    state: "enabled",
    labels: model ? { "gpu-model": model } : {},
    limitVcpus: vcpusMilli,
    limitMemoryMiB: memoryMiB,
    limitDevices: devices,
    freeVcpus: vcpusMilli,
    freeMemoryMiB: memoryMiB,
    freeDevices: { ...devices },
  };
}

function workload(
  vmId: string,
  vcpusMilli: number,
  memoryMiB: number,
  gpus: number,
  arriveS: number,
  departS: number,
): Workload {
  return {
    demand: { vcpus: vcpusMilli, memoryMiB, devices: gpus > 0 ? { [GPU]: gpus } : {}, vmId },
    arriveS,
    departS,
  };
}

/** One openb workload list with the node list, or undefined when the files are not there. */
export function readOpenb(variant: string, dir = OPENB_DIR): Trace | undefined {
  const nodes = join(dir, "openb_node_list_all_node.csv");
  const pods = join(dir, `openb_pod_list_${variant}.csv`);
  if (!existsSync(nodes) || !existsSync(pods)) return undefined;
  const hosts = rows(nodes).map((r) =>
    host(r.sn!, Number(r.cpu_milli), Number(r.memory_mib), Number(r.gpu), r.model!),
  );
  const workloads = rows(pods)
    .map((r) =>
      workload(
        r.name!,
        Number(r.cpu_milli),
        Number(r.memory_mib),
        Number(r.num_gpu),
        Number(r.creation_time),
        Number(r.deletion_time),
      ),
    )
    // The CPU-heavy samples are not in arrival order; a stable sort keeps file order among equals.
    .sort((a, b) => a.arriveS - b.arriveS);
  return { name: variant, hosts, workloads };
}

/**
 * A stand-in of the same shape: 1,500 hosts (a fifth CPU-only, the rest with 2, 4 or 8 GPUs) and
 * 8,000 workloads (most with one GPU, a seventh CPU-only, a few with 2 to 8), arriving faster than
 * they leave so that the site fills up, as the real trace does.
 */
export function generatedTrace(seed = 7): Trace {
  const r = random(seed);
  const hosts = Array.from({ length: 1500 }, (_, i) => {
    const [vcpus, memoryGiB, gpus, model] = r.pick([
      [[32, 256, 0, ""], 10],
      [[96, 384, 0, ""], 10],
      [[96, 384, 8, "g2"], 35],
      [[96, 512, 4, "t4"], 25],
      [[64, 256, 2, "p100"], 10],
      [[128, 768, 8, "g3"], 10],
    ] as const);
    return host(`node-${String(i).padStart(4, "0")}`, vcpus * 1000, memoryGiB * 1024, gpus, model);
  });
  const workloads: Workload[] = [];
  let t = 0;
  for (let i = 0; i < 8000; i++) {
    t += Math.round(-Math.log(1 - r.next()) * 60);
    const [vcpus, memoryGiB, gpus] = r.pick([
      [[4, 16, 0], 7],
      [[16, 64, 0], 7],
      [[6, 24, 1], 30],
      [[12, 48, 1], 35],
      [[24, 96, 2], 8],
      [[48, 192, 4], 6],
      [[96, 384, 8], 4],
    ] as const);
    // Lifetimes: most short, a long tail, a fifth that stay to the end.
    const life =
      r.next() < 0.2 ? Number.POSITIVE_INFINITY : Math.round(Math.exp(6 + 2.5 * r.next() * r.next() * 4));
    workloads.push(workload(`vm-${i}`, vcpus * 1000, memoryGiB * 1024, gpus, t, t + life));
  }
  return { name: "generated", hosts, workloads };
}
