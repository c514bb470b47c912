/**
 * Pure parsers of what `xl` prints, written against xl's own format strings (xen tools/xl/xl_info.c,
 * xl_utils.c, xl_migrate.c, libs/toollog/xtl_logger_stdio.c) and tested on recorded output.
 */
import { z } from "zod";
import type { PowerState } from "../../../shared/contracts/index.ts";
import { type DriverErrorCode, DriverErrorCode as E } from "../errors.ts";
import { XenError, XenErrorCode } from "./errors.ts";

/** One line of `xl list`: `%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f` (+ UUID with `-v`). */
export type XlListRow = {
  name: string;
  domid: number;
  memoryMiB: number;
  vcpus: number;
  /** Six letters or `-`: running, blocked, paused, shutdown, shutdown reason (-rscwS), dying. */
  flags: string;
  cpuSeconds: number;
  uuid?: string;
};

const LIST_ROW =
  /^(.+?)\s+(\d+)\s+(\d+)\s+(\d+)\s+([r-][b-][p-][s-][-rscwS?][d-])\s+(\d+(?:\.\d+)?)(?:\s+([0-9a-f]{8}-[0-9a-f-]{27}))?/;

/** Rows of `xl list` (header skipped; Domain-0 included). */
export function parseXlList(stdout: string): XlListRow[] {
  const rows: XlListRow[] = [];
  for (const line of stdout.split("\n")) {
    if (line.startsWith("Name ") || line.trim() === "") continue;
    const m = LIST_ROW.exec(line);
    if (!m)
      throw new XenError(XenErrorCode.commandFailed, `unexpected xl list line: ${JSON.stringify(line)}`);
    rows.push({
      name: m[1] ?? "",
      domid: Number(m[2]),
      memoryMiB: Number(m[3]),
      vcpus: Number(m[4]),
      flags: m[5] ?? "------",
      cpuSeconds: Number(m[6]),
      ...(m[7] ? { uuid: m[7] } : {}),
    });
  }
  return rows;
}

/**
 * The power state a domain's `xl list` flags mean. Shut down (`s`) or dying (`d`) is a domain on its
 * way out that nobody has cleaned up yet: stopped. `r`, `b` and `------` (runnable, not on a CPU this
 * instant) are all running.
 */
export function powerStateOfFlags(flags: string): Exclude<PowerState, "suspended" | "absent"> {
  if (flags[3] === "s" || flags[5] === "d") return "stopped";
  if (flags[2] === "p") return "paused";
  return "running";
}

/** `xl info`: `key<padding>: value` lines into a map. */
export function parseXlInfo(stdout: string): Map<string, string> {
  const info = new Map<string, string>();
  for (const line of stdout.split("\n")) {
    const m = /^([a-z_][a-z0-9_]*)\s*: ?(.*)$/.exec(line);
    if (m?.[1] && !info.has(m[1])) info.set(m[1], (m[2] ?? "").trim());
  }
  return info;
}

export type HostResources = { nrCpus: number; totalMemoryMiB: number; freeMemoryMiB: number };

/** The figures the driver needs from `xl info` (memory in MiB, as xl prints it). */
export function hostResources(info: Map<string, string>): HostResources {
  const num = (key: string) => {
    const n = Number(info.get(key));
    if (!info.has(key) || !Number.isFinite(n)) {
      throw new XenError(XenErrorCode.commandFailed, `xl info printed no number for ${key}`);
    }
    return n;
  };
  return { nrCpus: num("nr_cpus"), totalMemoryMiB: num("total_memory"), freeMemoryMiB: num("free_memory") };
}

/**
 * Free capacity: memory as Xen reports it (`free_memory`), vCPUs as the host's CPUs less the vCPUs of
 * its guests (Domain-0 and domains on their way out excluded): Usher places one vCPU per CPU, although
 * Xen could overcommit.
 */
export function freeCapacity(res: HostResources, rows: XlListRow[]): { vcpus: number; memoryMiB: number } {
  const held = rows
    .filter((r) => r.domid !== 0 && powerStateOfFlags(r.flags) !== "stopped")
    .reduce((n, r) => n + r.vcpus, 0);
  return { vcpus: res.nrCpus - held, memoryMiB: res.freeMemoryMiB };
}

const LongEntry = z.looseObject({
  domid: z.number().int().nullable(),
  config: z.looseObject({
    c_info: z.looseObject({ name: z.string(), uuid: z.string(), type: z.string().optional() }),
    b_info: z.looseObject({
      max_vcpus: z.number().int().optional(),
      target_memkb: z.number().optional(),
      max_memkb: z.number().optional(),
    }),
    disks: z.array(z.looseObject({ pdev_path: z.string().optional() })).optional(),
  }),
});

/** A guest's configured size and identity, from `xl list -l`. */
export type XlDomainConfig = {
  domid: number | null;
  name: string;
  uuid: string;
  vcpus?: number;
  memoryMiB?: number;
  disks: string[];
};

/** `xl list -l`: a JSON array of `{ domid, config }` (Domain-0 has no stored config and is left out). */
export function parseXlListLong(stdout: string): XlDomainConfig[] {
  if (stdout.trim() === "") return [];
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch (cause) {
    throw new XenError(XenErrorCode.commandFailed, "xl list -l printed invalid JSON", { cause });
  }
  const parsed = z.array(LongEntry).safeParse(json);
  if (!parsed.success) {
    throw new XenError(XenErrorCode.commandFailed, `unexpected xl list -l JSON: ${parsed.error.message}`);
  }
  return parsed.data.map(({ domid, config: { c_info, b_info, disks } }) => {
    const memkb = b_info.target_memkb ?? b_info.max_memkb;
    return {
      domid,
      name: c_info.name,
      uuid: c_info.uuid,
      ...(b_info.max_vcpus !== undefined ? { vcpus: b_info.max_vcpus } : {}),
      ...(memkb !== undefined ? { memoryMiB: Math.round(memkb / 1024) } : {}),
      disks: (disks ?? []).flatMap((d) => (d.pdev_path ? [d.pdev_path] : [])),
    };
  });
}

/** What an `xl` failure means, from its stderr; undefined when the driver does not recognise it. */
export function classifyXlFailure(stderr: string): DriverErrorCode | undefined {
  // find_domain(): "%s is an invalid domain identifier (rc=%d)"; xl list: "Error: Domain '%s' does not
  // exist."; xl domid: "Can't get domid of domain name '%s', maybe this domain does not exist."
  if (
    /is an invalid domain identifier|Domain '.*' does not exist|Can't get domid of domain name/.test(stderr)
  ) {
    return E.domainNotFound;
  }
  // xl create's freemem(): "failed to free memory for the domain"; libxc: "Out of memory" / ENOMEM.
  if (/failed to free memory for the domain|Out of memory|Cannot allocate memory/.test(stderr)) {
    return E.insufficientResources;
  }
  // Not on a Xen dom0 (no privcmd), or xl cannot reach xenstore/libxc.
  if (/Could not obtain handle on privileged command interface|cannot init xl context/.test(stderr)) {
    return E.hostUnreachable;
  }
  return undefined;
}

/** Why an `xl migrate` failed: the target's ssh never came up, or the migration itself failed. */
export function classifyMigrateFailure(stderr: string): DriverErrorCode {
  const ssh =
    /ssh: |Could not resolve hostname|Connection refused|No route to host|Connection timed out|Host key verification failed|Permission denied \(/;
  if (ssh.test(stderr)) return E.hostUnreachable;
  return classifyXlFailure(stderr) === E.domainNotFound ? E.domainNotFound : E.migrationFailed;
}

// xl migrate hides libxc's page-copy progress (XTL_STDIOSTREAM_HIDE_PROGRESS while suspending), so
// progress comes from the protocol's own messages, sender's and (through ssh) receiver's, in order.
const MILESTONES: [RegExp, number][] = [
  [/^Saving to migration stream/, 5],
  [/^Loading new save file <incoming migration stream>/, 10],
  [/^xc: info: Saving domain/, 15],
  [/^xc: info: Restoring domain/, 20],
  [/^xc: info: Restore successful/, 75],
  [/^migration target: Transfer complete/, 80],
  [/^migration sender: Target has acknowledged transfer/, 85],
  [/^migration sender: Giving target permission to start/, 90],
  [/^migration target: Domain started/, 95],
  [/^migration sender: Target reports successful startup/, 98],
  [/^Migration successful/, 100],
];
// xtl_logger_stdio's progress line, "<context>: <doing_what>: %lu/%lu  %3d%%", shown by builds or
// options that do not hide it: mapped into the copy's share (20..75).
const XTL_PROGRESS = /^xc: (?:[a-z]+: )?Frames.*: (\d+)\/(\d+)\s+(\d+)%$/;

/** Turns `xl migrate` stderr, chunk by chunk, into rising percentages. */
export class MigrationProgress {
  private buffer = "";
  private last = 0;

  /** Feeds a chunk; returns the new percentages it reached, rising. */
  feed(chunk: string): number[] {
    this.buffer += chunk;
    const lines = this.buffer.split(/[\r\n]/);
    this.buffer = lines.pop() ?? "";
    const out: number[] = [];
    for (const line of lines) {
      const pct = migrationPercent(line.trim());
      if (pct !== undefined && pct > this.last) {
        this.last = pct;
        out.push(pct);
      }
    }
    return out;
  }
}

/** The percentage one line of `xl migrate` stderr stands for, if any. */
export function migrationPercent(line: string): number | undefined {
  for (const [re, pct] of MILESTONES) if (re.test(line)) return pct;
  const m = XTL_PROGRESS.exec(line);
  if (m) return 20 + Math.floor((Math.min(100, Number(m[3])) * 55) / 100);
  return undefined;
}
