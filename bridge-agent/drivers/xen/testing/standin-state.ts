/**
 * State and output formats of the `xl` stand-in (xl-standin.ts). Xen cannot run on the test machines,
 * so tests drive the Xen driver against this stand-in; it keeps one host's domains in a JSON file and
 * prints what real `xl` prints, using the format strings of xen's tools/xl (xl_info.c list_domains(),
 * output_physinfo(); libxl's JSON for `xl list -l`).
 */
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmdirSync, statSync, writeFileSync } from "node:fs";

export type StandinDomain = {
  domid: number;
  name: string;
  uuid: string;
  type: string;
  memoryMiB: number;
  vcpus: number;
  /** Xen counts pauses: each `xl pause` needs its own `xl unpause`. */
  pauseCount: number;
  /** Set once the guest has shut down (for a save: "suspend") but nobody has destroyed it yet. */
  shutdown?: "poweroff" | "suspend";
  /** When `xl shutdown` asked the guest to power off; it does so after XL_STANDIN_ACPI_MS. */
  shutdownRequestedAt?: number;
  startedAt: number;
  /** The parsed xl config it was created from (and that `xl save` / `xl migrate` carry along). */
  config: XlConfig;
};

export type XlConfig = Record<string, string | number | string[]>;

export type StandinState = { nextDomid: number; domains: StandinDomain[] };

const env = process.env;
export const HOST = {
  nrCpus: Number(env.XL_STANDIN_NR_CPUS ?? 8),
  totalMemoryMiB: Number(env.XL_STANDIN_TOTAL_MIB ?? 16384),
  dom0MemoryMiB: Number(env.XL_STANDIN_DOM0_MIB ?? 1024),
  dom0Vcpus: Number(env.XL_STANDIN_DOM0_VCPUS ?? 2),
  /** A guest with an OS (one with a disk) powers off this long after `xl shutdown`; "never" for never. */
  acpiMs:
    env.XL_STANDIN_ACPI_MS === "never" ? Number.POSITIVE_INFINITY : Number(env.XL_STANDIN_ACPI_MS ?? 100),
  /** Delay between the steps of save, restore and migrate. */
  stepMs: Number(env.XL_STANDIN_STEP_MS ?? 10),
};

/** Diskless guests have no OS: they never answer ACPI and show as running in SeaBIOS. */
export const hasOs = (d: StandinDomain) => Array.isArray(d.config.disk) && d.config.disk.length > 0;

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Runs `fn` on the state of `path` under a lock (a lock folder, as xl's own create lock serialises). */
export function withState<T>(path: string, fn: (s: StandinState) => T): T {
  const lock = `${path}.lock`;
  for (let i = 0; ; i++) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (i > 2000) throw new Error(`stand-in: cannot lock ${path}`);
      try {
        if (Date.now() - statSync(lock).mtimeMs > 10_000) rmdirSync(lock); // left by a killed process
      } catch {}
      sleepSync(5);
    }
  }
  try {
    const state = load(path);
    settle(state);
    const out = fn(state);
    writeFileSync(`${path}.tmp`, JSON.stringify(state, null, 2));
    renameSync(`${path}.tmp`, path);
    return out;
  } finally {
    rmdirSync(lock);
  }
}

function load(path: string): StandinState {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as StandinState;
  } catch {
    return { nextDomid: 1, domains: [] };
  }
}

/**
 * What time did meanwhile: a guest asked to power off that has an OS and is not paused has done so,
 * and xl's monitoring daemon destroyed it (on_poweroff="destroy").
 */
function settle(state: StandinState): void {
  const now = Date.now();
  state.domains = state.domains.filter(
    (d) =>
      !(
        d.shutdownRequestedAt !== undefined &&
        d.pauseCount === 0 &&
        hasOs(d) &&
        now >= d.shutdownRequestedAt + HOST.acpiMs
      ),
  );
}

export function freeMemoryMiB(state: StandinState): number {
  return HOST.totalMemoryMiB - HOST.dom0MemoryMiB - state.domains.reduce((n, d) => n + d.memoryMiB, 0);
}

/** libxl_domain_qualifier_to_domid(): all digits is a domain id, anything else a name. */
export function findDomain(state: StandinState, q: string): StandinDomain | undefined {
  return /^\d+$/.test(q)
    ? state.domains.find((d) => d.domid === Number(q))
    : state.domains.find((d) => d.name === q);
}

export const LIST_HEADER = "Name                                        ID   Mem VCPUs\tState\tTime(s)";

function flags(d: StandinDomain): string {
  const running = d.pauseCount === 0 && !d.shutdown;
  const reason = d.shutdown === "suspend" ? "s" : "-";
  return `${running && !hasOs(d) ? "r" : "-"}${running && hasOs(d) ? "b" : "-"}${d.pauseCount > 0 ? "p" : "-"}${d.shutdown ? "s" : "-"}${d.shutdown ? reason : "-"}-`;
}

/** One `xl list` line: "%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f". */
function listLine(
  name: string,
  domid: number,
  mem: number,
  vcpus: number,
  state: string,
  secs: number,
): string {
  return `${name.padEnd(40)} ${String(domid).padStart(5)} ${String(mem).padStart(5)} ${String(vcpus).padStart(5)}     ${state}  ${secs.toFixed(1).padStart(8)}`;
}

export function dom0Line(): string {
  // Grows with the wall clock, as a real dom0's does: each `xl` run is a new process of the stand-in.
  const secs = (Date.now() / 1000 - 1.7e9) * 0.05;
  return listLine("Domain-0", 0, HOST.dom0MemoryMiB, HOST.dom0Vcpus, "r-----", secs);
}

export function domainLine(d: StandinDomain): string {
  const secs = ((Date.now() - d.startedAt) / 1000) * 0.02;
  return listLine(d.name, d.domid, d.memoryMiB, d.vcpus, flags(d), secs);
}

/** A domain's libxl_domain_config as `xl list -l` prints it (abridged to the usual keys). */
export function domainJson(d: StandinDomain): unknown {
  const disks = (Array.isArray(d.config.disk) ? d.config.disk : []).map((spec, i) => {
    const target = /target=(.*)$/.exec(spec)?.[1] ?? "";
    return {
      pdev_path: target,
      vdev: `xvd${String.fromCharCode(97 + i)}`,
      backend: "qdisk",
      format: "qcow2",
      readwrite: 1,
    };
  });
  const nics = (Array.isArray(d.config.vif) ? d.config.vif : []).map((spec, i) => ({
    devid: i,
    mac: /mac=([0-9a-f:]+)/.exec(spec)?.[1] ?? "00:16:3e:00:00:01",
    bridge: /bridge=([^,\s]+)/.exec(spec)?.[1] ?? "xenbr0",
    script: "/etc/xen/scripts/vif-bridge",
    nictype: "vif_ioemu",
  }));
  return {
    domid: d.domid,
    config: {
      c_info: { type: d.type, name: d.name, uuid: d.uuid, run_hotplug_scripts: "True" },
      b_info: {
        max_vcpus: d.vcpus,
        avail_vcpus: Array.from({ length: d.vcpus }, (_, i) => i),
        max_memkb: d.memoryMiB * 1024,
        target_memkb: d.memoryMiB * 1024,
        video_memkb: d.type === "hvm" ? 8192 : 0,
        shadow_memkb: 1536,
        sched_params: {},
        device_model_version: "qemu_xen",
        ...(d.type === "hvm" ? { "type.hvm": { pae: "True", apic: "True", acpi: "True", boot: "cd" } } : {}),
      },
      disks,
      nics,
      on_poweroff: String(d.config.on_poweroff ?? "destroy"),
      on_reboot: String(d.config.on_reboot ?? "restart"),
      on_crash: String(d.config.on_crash ?? "destroy"),
    },
  };
}

/** `xl info` as on a Debian 12 dom0 with Xen 4.17 (output_nodeinfo, output_physinfo, output_xeninfo). */
export function infoText(state: StandinState): string {
  const rows: [string, string | number][] = [
    ["host", "xen-standin"],
    ["release", "6.1.0-18-amd64"],
    ["version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"],
    ["machine", "x86_64"],
    ["nr_cpus", HOST.nrCpus],
    ["max_cpu_id", HOST.nrCpus - 1],
    ["nr_nodes", 1],
    ["cores_per_socket", HOST.nrCpus / 2],
    ["threads_per_core", 2],
    ["cpu_mhz", "2793.436"],
    ["hw_caps", "bfebfbff:77fafbff:2c100800:00000121:0000000f:009c6fbf:00000000:00000100"],
    ["virt_caps", "pv hvm hvm_directio pv_directio hap shadow"],
    ["total_memory", HOST.totalMemoryMiB],
    ["free_memory", freeMemoryMiB(state)],
    ["sharing_freed_memory", 0],
    ["sharing_used_memory", 0],
    ["outstanding_claims", 0],
    ["free_cpus", 0],
    ["xen_major", 4],
    ["xen_minor", 17],
    ["xen_extra", ".3-pre"],
    ["xen_version", "4.17.3-pre"],
    ["xen_caps", "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"],
    ["xen_scheduler", "credit2"],
    ["xen_pagesize", 4096],
    ["platform_params", "virt_start=0xffff800000000000"],
    ["xen_changeset", ""],
    ["xen_commandline", "placeholder dom0_mem=1024M,max:1024M no-real-mode edd=off"],
    ["cc_compiler", "x86_64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0"],
    ["cc_compile_by", "pkg-xen-devel"],
    ["cc_compile_domain", "lists.alioth.debian.org"],
    ["cc_compile_date", "Tue Feb  6 12:00:00 UTC 2024"],
    ["build_id", "8d5b4b9c2b7e6f1a0c3d2e1f4a5b6c7d8e9f0a1b"],
    ["xend_config_format", 4],
  ];
  return rows.map(([k, v]) => `${k.padEnd(23)}: ${v}\n`).join("");
}

/** Enough of xl's config syntax (xl.cfg(5)) for what the driver writes: `key = value`, strings, lists. */
export function parseXlConfig(text: string): XlConfig {
  const cfg: XlConfig = {};
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*$/, "").trim(); // the driver writes no `#` inside strings
    if (!line) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)$/.exec(line);
    if (!m?.[1] || m[2] === undefined) throw new Error(`config parsing error near \`${line}'`);
    const value = m[2].trim();
    if (value.startsWith("[")) {
      cfg[m[1]] = [...value.matchAll(/"([^"]*)"/g)].map((x) => x[1] ?? "");
    } else if (value.startsWith('"')) {
      cfg[m[1]] = value.slice(1, value.lastIndexOf('"'));
    } else {
      cfg[m[1]] = Number(value);
    }
  }
  return cfg;
}

export const SAVE_MAGIC = "Xen saved domain, xl format\n \0 \r";

/** Ends the command: its message goes to stderr, its code is the exit code. */
export class Exit extends Error {
  readonly code: number;
  constructor(code: number, stderr = "") {
    super(stderr);
    this.code = code;
  }
}

export const invalidId = (q: string) => new Exit(1, `${q} is an invalid domain identifier (rc=-6)\n`);

/** getopt as xl's SWITCH_FOREACH_OPT does it: options anywhere, `--` ends them, unknown ones exit 2. */
export function getopt(cmd: string, args: string[], spec: string, min: number) {
  const flags = new Map<string, string>();
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? "";
    if (a === "--") {
      rest.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith("--") && a !== "--debug") throw new Exit(2, `option \`-' not supported.\n`);
    if (a.startsWith("-") && a.length > 1 && a !== "--debug") {
      const c = a[1] ?? "";
      const at = spec.indexOf(c);
      if (c === "h") throw new Exit(0);
      if (at < 0) throw new Exit(2, `option \`${c}' not supported.\n`);
      flags.set(c, spec[at + 1] === ":" ? (a.length > 2 ? a.slice(2) : (args[++i] ?? "")) : "");
    } else if (a !== "--debug") rest.push(a);
  }
  if (rest.length < min) {
    throw new Exit(2, `'xl ${cmd}' requires at least ${min} argument${min > 1 ? "s" : ""}.\n\n`);
  }
  return { flags, rest };
}

export function mustFind(s: StandinState, q: string): StandinDomain {
  const d = findDomain(s, q);
  if (!d) throw invalidId(q);
  return d;
}

export function domainFromConfig(s: StandinState, cfg: XlConfig, paused: boolean): StandinDomain {
  const name = typeof cfg.name === "string" ? cfg.name : "";
  if (!name) throw new Exit(1, "Domain name must be specified.\n");
  const memoryMiB = Number(cfg.memory ?? 128);
  if (s.domains.some((d) => d.name === name)) {
    throw new Exit(
      3,
      `libxl: error: libxl_domain.c:88:libxl__domain_rename: Domain ${s.nextDomid}:Domain with name "${name}" already exists.\n` +
        `libxl: error: libxl_create.c:732:libxl__domain_make: Domain ${s.nextDomid}:Domain creation failed\n`,
    );
  }
  if (memoryMiB > freeMemoryMiB(s)) throw new Exit(3, "failed to free memory for the domain\n");
  for (const disk of Array.isArray(cfg.disk) ? cfg.disk : []) {
    const target = /target=(.*)$/.exec(disk)?.[1] ?? "";
    if (!existsSync(target)) {
      throw new Exit(
        3,
        `libxl: error: libxl_device.c:1204:device_backend_callback: Domain ${s.nextDomid}:unable to add device with path /local/domain/0/backend/qdisk/${s.nextDomid}/51712\n` +
          `libxl: error: libxl_create.c:1867:domcreate_attach_devices: Domain ${s.nextDomid}:unable to add disk devices\n`,
      );
    }
  }
  const d: StandinDomain = {
    domid: s.nextDomid++,
    name,
    uuid: typeof cfg.uuid === "string" ? cfg.uuid : randomUUID(),
    type: typeof cfg.type === "string" ? cfg.type : "pv",
    memoryMiB,
    vcpus: Number(cfg.vcpus ?? 1),
    pauseCount: paused ? 1 : 0,
    startedAt: Date.now(),
    config: cfg,
  };
  s.domains.push(d);
  return d;
}
