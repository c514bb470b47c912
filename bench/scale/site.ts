/**
 * The simulated site of section 7: hosts of three sizes, each holding a fixed number of running VMs
 * from a flavour list (drawn with a seeded generator, so every run sees the same site), written
 * straight to the table in bulk (hosts with their free counters, VMs, claims) and to the sim agent's
 * state files, so that the records and the hosts agree and an inventory finds no drift.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BatchWriteCommand } from "@aws-sdk/lib-dynamodb";
import type { Deps } from "../../shared/services/context.ts";
import { newHost } from "../../shared/services/hosts.ts";
import type { ClaimItem, VmItem } from "../../shared/store/items.ts";
import { keys } from "../../shared/store/keys.ts";
import { random } from "../lib/random.ts";

const GIB = 1024;

/** Host sizes, in turn. */
const HOST_SHAPES = [
  { vcpus: 64, memoryMiB: 256 * GIB },
  { vcpus: 96, memoryMiB: 384 * GIB },
  { vcpus: 128, memoryMiB: 512 * GIB },
] as const;

/** VM flavours by share (mostly small). */
const FLAVOURS: readonly (readonly [{ vcpus: number; memoryMiB: number }, number])[] = [
  [{ vcpus: 1, memoryMiB: 2 * GIB }, 15],
  [{ vcpus: 2, memoryMiB: 4 * GIB }, 25],
  [{ vcpus: 2, memoryMiB: 8 * GIB }, 15],
  [{ vcpus: 4, memoryMiB: 8 * GIB }, 20],
  [{ vcpus: 4, memoryMiB: 16 * GIB }, 15],
  [{ vcpus: 8, memoryMiB: 32 * GIB }, 10],
];

/** The project the seeded VMs belong to. */
export const SCALE_PROJECT = "scale";

export type SeededVm = { id: string; name: string; opId: string; vcpus: number; memoryMiB: number };
export type SeededHost = { id: string; vcpus: number; memoryMiB: number; vms: SeededVm[] };

/** The site: `hosts` hosts (ids `<site>-<n>`, as bed.seedHosts names them) with `vmsPerHost` VMs each. */
export function generateSite(site: string, hosts: number, vmsPerHost: number): SeededHost[] {
  const rnd = random(7);
  const width = String(hosts - 1).length;
  return Array.from({ length: hosts }, (_, h) => {
    const shape = HOST_SHAPES[h % HOST_SHAPES.length]!;
    const id = `${site}-${String(h).padStart(width, "0")}`;
    const vms = Array.from({ length: vmsPerHost }, (_, i) => {
      const flavour = rnd.pick(FLAVOURS);
      const n = `${String(h).padStart(width, "0")}-${i}`;
      // As long as the ids newId() makes (`vm-` and a 26-character ULID), so messages weigh the same.
      const pad = "0".repeat(Math.max(0, 26 - n.length));
      return { id: `vm-${pad}${n}`, name: `scale-${n}`, opId: `op-${pad}${n}`, ...flavour };
    });
    return { id, ...shape, vms };
  });
}

/** Items written, and how long it took. */
export type SeedReport = { items: number; seconds: number };

/** Batches of 25 items (BatchWriteItem's most) in flight at once. */
const WRITES_AT_ONCE = 8;

/**
 * Writes every host (its free counters less its VMs' claims), VM (running, its one operation done,
 * changed an hour ago so that every inventory compares it) and claim, 25 items a call. Not written:
 * the VMs' start operations and name reservations, which no inventory or placement reads.
 */
export async function seedSite(deps: Deps, site: string, hosts: readonly SeededHost[]): Promise<SeedReport> {
  const started = performance.now();
  const longAgo = new Date(Date.now() - 3_600_000).toISOString();
  function* items(): Generator<Record<string, unknown>> {
    for (const h of hosts) {
      const host = newHost(deps, {
        id: h.id,
        site,
        kind: "sim",
        address: `${h.id}.sim`,
        capacity: { vcpus: h.vcpus, memoryMiB: h.memoryMiB },
      });
      for (const vm of h.vms) {
        host.freeVcpus -= vm.vcpus;
        host.freeMemoryMiB -= vm.memoryMiB;
      }
      host.version += h.vms.length;
      yield { ...host, ...keys.host(h.id), ...keys.hostIndex(site, h.id) };
      for (const vm of h.vms) {
        const spec = { vcpus: vm.vcpus, memoryMiB: vm.memoryMiB };
        const item: VmItem = {
          type: "vm",
          id: vm.id,
          name: vm.name,
          project: SCALE_PROJECT,
          owner: "bench",
          site,
          spec,
          labels: {},
          state: "running",
          hostId: h.id,
          opSeq: 1,
          doneSeq: 1,
          version: 3,
          createdAt: longAgo,
          updatedAt: longAgo,
        };
        yield { ...item, ...keys.vm(vm.id), ...keys.vmIndex(SCALE_PROJECT, vm.id) };
        const claim: ClaimItem = {
          type: "claim",
          hostId: h.id,
          vmId: vm.id,
          opId: vm.opId,
          ...spec,
          devices: {},
          createdAt: longAgo,
        };
        yield { ...claim, ...keys.claim(h.id, vm.id) };
      }
    }
  }
  let written = 0;
  const source = items();
  const nextBatch = () => {
    const batch: Record<string, unknown>[] = [];
    for (let r = source.next(); !r.done; r = source.next()) {
      batch.push(r.value);
      if (batch.length === 25) break;
    }
    return batch;
  };
  const writer = async () => {
    for (let batch = nextBatch(); batch.length > 0; batch = nextBatch()) {
      let pending = batch.map((Item) => ({ PutRequest: { Item } }));
      while (pending.length > 0) {
        const out = await deps.db.doc.send(
          new BatchWriteCommand({ RequestItems: { [deps.db.table]: pending } }),
        );
        pending = (out.UnprocessedItems?.[deps.db.table] ?? []) as typeof pending;
      }
      written += batch.length;
    }
  };
  await Promise.all(Array.from({ length: WRITES_AT_ONCE }, writer));
  return { items: written, seconds: (performance.now() - started) / 1000 };
}

/** Writes each host's domains where the sim agent keeps them (`<dir>/<hostId>.json`, SimHost's format). */
export async function writeSimStates(dir: string, hosts: readonly SeededHost[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  const createdAt = new Date(Date.now() - 3_600_000).toISOString();
  const write = (h: SeededHost, hostIndex: number) => {
    const domains = h.vms.map((vm, i) => ({
      // A fixed UUID per VM, so a re-run writes the same domains.
      uuid: `00000000-0000-4000-8000-${(hostIndex * 1000 + i).toString(16).padStart(12, "0")}`,
      name: vm.name,
      vmId: vm.id,
      opId: vm.opId,
      lastOpId: vm.opId,
      vcpus: vm.vcpus,
      memoryMiB: vm.memoryMiB,
      state: "running",
      createdAt,
    }));
    return writeFile(join(dir, `${h.id}.json`), `${JSON.stringify({ version: 1, hostId: h.id, domains })}\n`);
  };
  for (let i = 0; i < hosts.length; i += 64)
    await Promise.all(hosts.slice(i, i + 64).map((h, j) => write(h, i + j)));
}
