/**
 * Parsers for what virsh prints (pure), tested against outputs recorded from libvirt 9.0
 * (kvm/testing/recorded). Each throws `command_failed` on output it does not recognise rather than
 * guessing.
 */
import type { PowerState } from "../../../shared/contracts/index.ts";
import { KvmError, KvmErrorCode } from "./errors.ts";
import { isUuid } from "./validate.ts";

const unrecognised = (what: string, text: string) =>
  new KvmError(
    KvmErrorCode.commandFailed,
    `unrecognised ${what} output: ${JSON.stringify(text.slice(0, 200))}`,
  );

/** `virsh domstate --reason`: `running (booted)`, `shut off (saved)`, `paused (user)`. */
export type DomState = { state: string; reason?: string };

export function parseDomstate(text: string): DomState {
  const line = text.trim().split("\n")[0]?.trim() ?? "";
  const m = /^([a-z][a-z ]*?)(?: \(([^)]*)\))?$/.exec(line);
  if (!m?.[1]) throw unrecognised("domstate", text);
  return { state: m[1], ...(m[2] ? { reason: m[2] } : {}) };
}

/**
 * Usher's power state for a virsh state. A shut-off domain with a managed save is `suspended`: its
 * reason says `saved` right after `managedsave`, but after a libvirtd restart it says `unknown`, so
 * callers pass `managedSave` (from dominfo) when the reason is not `saved`.
 */
export function toPowerState(s: DomState, managedSave = false): PowerState {
  switch (s.state) {
    case "running":
    case "idle":
    case "blocked":
    case "in shutdown":
    case "no state":
      return "running";
    case "paused":
    case "pmsuspended": // suspended to RAM by the guest: holds its resources, frozen
      return "paused";
    case "shut off":
      return s.reason === "saved" || managedSave ? "suspended" : "stopped";
    case "crashed":
    case "dying":
      return "stopped";
    default:
      throw unrecognised("domstate", s.state);
  }
}

/** `virsh list --all --uuid`: one UUID a line. */
export function parseUuidList(text: string): string[] {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  for (const l of lines) if (!isUuid(l)) throw unrecognised("list --uuid", text);
  return lines;
}

/** `Key:   value` lines into a map (first colon splits; keys trimmed). */
function fields(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) out.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return out;
}

const SIZE_UNITS: Record<string, number> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
};

/** `65536 KiB`, `64.375 MiB`, `0.000 B` → bytes; undefined when not a size. */
export function parseSize(value: string | undefined): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)$/.exec(value?.trim() ?? "");
  const unit = m?.[2] ? SIZE_UNITS[m[2]] : undefined;
  return m && unit ? Number(m[1]) * unit : undefined;
}

const mib = (bytes: number) => Math.floor(bytes / 1024 ** 2);

/** `virsh nodeinfo`: host CPUs and memory. */
export function parseNodeinfo(text: string): { cpus: number; memoryMiB: number } {
  const f = fields(text);
  const cpus = Number(f.get("CPU(s)"));
  const mem = parseSize(f.get("Memory size"));
  if (!Number.isInteger(cpus) || cpus < 1 || mem === undefined) throw unrecognised("nodeinfo", text);
  return { cpus, memoryMiB: mib(mem) };
}

/**
 * `/proc/loadavg` (`0.52 0.58 0.59 2/611 12345`) as the host's CPU load: the one-minute average of
 * runnable threads over its CPUs, so 1 is every CPU busy (it can exceed 1 when threads wait).
 */
export function parseLoadavg(text: string, cpus: number): number {
  const m = /^(\d+(?:\.\d+)?)\s/.exec(`${text.trim()} `);
  if (!m?.[1] || !(cpus >= 1)) throw unrecognised("/proc/loadavg", text);
  return Number(m[1]) / cpus;
}

/** `virsh nodememstats`; `availableMiB` counts page cache and buffers, which the kernel gives back. */
export function parseNodememstats(text: string): { totalMiB: number; freeMiB: number; availableMiB: number } {
  const f = fields(text);
  const [total, free, buffers, cached] = ["total", "free", "buffers", "cached"].map((k) =>
    parseSize(f.get(k)),
  );
  if (total === undefined || free === undefined) throw unrecognised("nodememstats", text);
  return {
    totalMiB: mib(total),
    freeMiB: mib(free),
    availableMiB: mib(free + (buffers ?? 0) + (cached ?? 0)),
  };
}

/** `virsh freecell` or `freecell --all`: the free memory of all NUMA cells. */
export function parseFreecell(text: string): number {
  const total = [...text.matchAll(/^\s*Total:\s*(.+)$/gm)].at(-1)?.[1];
  const bytes = parseSize(total);
  if (bytes === undefined) throw unrecognised("freecell", text);
  return mib(bytes);
}

export type DomInfo = { state: string; managedSave: boolean; vcpus: number; memoryMiB: number };

/** `virsh dominfo`. */
export function parseDominfo(text: string): DomInfo {
  const f = fields(text);
  const state = f.get("State");
  const vcpus = Number(f.get("CPU(s)"));
  const mem = parseSize(f.get("Max memory"));
  if (!state || !Number.isInteger(vcpus) || mem === undefined) throw unrecognised("dominfo", text);
  return { state, managedSave: f.get("Managed save") === "yes", vcpus, memoryMiB: mib(mem) };
}

export type JobInfo = { type: string; operation?: string; percent?: number };

/** `virsh domjobinfo`: `Job type: None` when idle; `Unbounded` with data figures while migrating. */
export function parseDomjobinfo(text: string): JobInfo {
  const f = fields(text);
  const type = f.get("Job type");
  if (!type) throw unrecognised("domjobinfo", text);
  const total = parseSize(f.get("Data total"));
  const remaining = parseSize(f.get("Data remaining"));
  const operation = f.get("Operation");
  const percent =
    total && remaining !== undefined
      ? Math.max(0, Math.min(100, 100 - (remaining * 100) / total))
      : undefined;
  return { type, ...(operation ? { operation } : {}), ...(percent !== undefined ? { percent } : {}) };
}

/**
 * Progress of `virsh migrate --verbose`, fed its standard error in whatever chunks arrive. virsh
 * redraws one line with `\r`: `\rMigration: [  1 %]\rMigration: [100 %]` (newer releases print
 * decimals, `[ 50.12 %]`). `feed` returns the new figures, each above the last (never backwards).
 */
export class MigrationProgress {
  private buffer = "";
  private last = -1;

  feed(chunk: string): number[] {
    this.buffer += chunk;
    const out: number[] = [];
    let consumed = 0;
    for (const m of this.buffer.matchAll(/Migration: \[\s*(\d+(?:\.\d+)?)\s*%\]/g)) {
      consumed = (m.index ?? 0) + m[0].length;
      const p = Math.min(100, Number(m[1]));
      if (p > this.last) {
        this.last = p;
        out.push(p);
      }
    }
    // Keep an unfinished figure for the next chunk; drop what was read.
    this.buffer = this.buffer.slice(consumed).slice(-64);
    return out;
  }

  /** The last figure reported (-1 before any). */
  get percent(): number {
    return this.last;
  }
}
