#!/usr/bin/env node
/**
 * An `xl` stand-in for tests: Xen cannot run on the test machines (no Xen hypervisor), so the Xen
 * driver's tests put this first on PATH as `xl`. It keeps one host's domains in the JSON file named by
 * XL_STANDIN_STATE and answers with real xl's output and exit codes, taken from xen's tools/xl sources
 * (xl_vmcontrol.c, xl_info.c, xl_utils.c find_domain(), xl_saverestore.c, xl_migrate.c): e.g. an unknown
 * domain is "<name> is an invalid domain identifier (rc=-6)" on stderr and exit 1.
 *
 * `xl migrate <domain> <host>` looks the host up in XL_STANDIN_PEERS (JSON: address → state file of that
 * host) in place of ssh, and moves the domain into that file as xl migrate-receive would. Other knobs:
 * XL_STANDIN_NR_CPUS, _TOTAL_MIB, _DOM0_MIB, _ACPI_MS (guests with a disk power off this long after
 * `xl shutdown`; diskless ones have no OS and never do), _STEP_MS (pace of save, restore, migrate).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { setTimeout as delay } from "node:timers/promises";
import { migrate } from "./standin-migrate.ts";
import {
  dom0Line,
  domainFromConfig,
  domainJson,
  domainLine,
  Exit,
  findDomain,
  getopt,
  HOST,
  hasOs,
  infoText,
  invalidId,
  LIST_HEADER,
  mustFind,
  parseXlConfig,
  SAVE_MAGIC,
  type StandinDomain,
  withState,
} from "./standin-state.ts";

const stateFile = process.env.XL_STANDIN_STATE ?? "";
const out = (s: string) => process.stdout.write(s);
const err = (s: string) => process.stderr.write(s);
const step = () => delay(HOST.stepMs);

async function create(args: string[]): Promise<void> {
  const { flags, rest } = getopt("create", args, "Fnqf:pcdeVA", 0);
  const extra = rest.filter((a) => a.includes("="));
  const file = flags.get("f") ?? rest.find((a) => !a.includes("="));
  if (!file) throw new Exit(1, "Config file not specified and none in save file\n");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new Exit(3, `Failed to read config file: ${file}: No such file or directory\n`);
  }
  if (!flags.has("q")) err(`Parsing config from ${file}\n`);
  const cfg = parseXlConfig(`${text}\n${extra.join("\n")}`);
  withState(stateFile, (s) => domainFromConfig(s, cfg, flags.has("p")));
}

function list(args: string[]): void {
  const { flags, rest } = getopt("list", args, "lvhZcn", 0);
  withState(stateFile, (s) => {
    let doms = [...s.domains].sort((a, b) => a.domid - b.domid);
    if (rest[0] !== undefined) {
      const d = findDomain(s, rest[0]);
      if (!d && /^\d+$/.test(rest[0])) throw new Exit(1, `Error: Domain '${rest[0]}' does not exist.\n`);
      if (!d) throw invalidId(rest[0]);
      doms = [d];
    }
    if (flags.has("l")) return out(`${JSON.stringify(doms.map(domainJson), null, 4)}\n`);
    out(`${LIST_HEADER}\n`);
    if (rest[0] === undefined) out(`${dom0Line()}\n`);
    for (const d of doms) out(`${domainLine(d)}\n`);
  });
}

/** shutdown and reboot: ask the guest through PV drivers (guests with an OS) or, with -F, ACPI. */
function shutdownOrReboot(what: "shutdown" | "reboot", args: string[]): void {
  const { flags, rest } = getopt(what, args, "awF", 0);
  if (!rest[0]) throw new Exit(1, "You must specify -a or a domain id.\n\n");
  withState(stateFile, (s) => {
    const d = mustFind(s, rest[0] ?? "");
    err(`${what === "reboot" ? "Rebooting" : "Shutting down"} domain ${d.domid}\n`);
    if (!hasOs(d)) {
      const button = what === "reboot" ? "reset" : "power";
      if (!flags.has("F")) {
        throw new Exit(
          1,
          `PV control interface not available: external graceful ${what} not possible.\nUse "-F" to fallback to ACPI ${button} event.\n${what} failed (rc=-13)\n`,
        );
      }
      err(`PV control interface not available: sending ACPI ${button} button event.\n`);
      if (what === "shutdown") return; // no OS behind the button: nothing happens
    }
    if (what === "shutdown") {
      d.shutdownRequestedAt = Date.now();
      return;
    }
    // on_reboot="restart": xl's daemon destroys the domain and builds it again, with a new domid.
    d.domid = s.nextDomid++;
    d.startedAt = Date.now();
  });
}

function destroy(args: string[]): void {
  const { flags, rest } = getopt("destroy", args, "f", 1);
  withState(stateFile, (s) => {
    const q = rest[0] ?? "";
    if (q === "0" && !flags.has("f")) {
      throw new Exit(
        1,
        "Not destroying domain 0; use -f to force.\nThis can only be done when using a disaggregated hardware domain and toolstack.\n\n",
      );
    }
    const d = findDomain(s, q);
    if (!d && /^\d+$/.test(q))
      throw new Exit(
        1,
        `libxl: error: libxl_domain.c:1305:libxl_domain_destroy: Domain ${q}:Non-existant domain\ndestroy failed (rc=-21)\n`,
      );
    if (!d) throw invalidId(q);
    s.domains = s.domains.filter((x) => x !== d);
  });
}

function pause(cmd: "pause" | "unpause", args: string[]): void {
  const { rest } = getopt(cmd, args, "", 1);
  withState(stateFile, (s) => {
    const d = mustFind(s, rest[0] ?? "");
    // main_pause/main_unpause ignore libxl's result: unpausing a running domain still exits 0.
    if (cmd === "pause") d.pauseCount++;
    else if (d.pauseCount > 0) {
      d.pauseCount--;
      if (d.pauseCount === 0 && d.shutdownRequestedAt !== undefined) d.shutdownRequestedAt = Date.now();
    }
  });
}

function domid(args: string[]): void {
  const { rest } = getopt("domid", args, "", 1);
  const name = rest[0] ?? "";
  withState(stateFile, (s) => {
    const d = s.domains.find((x) => x.name === name);
    if (!d)
      throw new Exit(1, `Can't get domid of domain name '${name}', maybe this domain does not exist.\n`);
    out(`${d.domid}\n`);
  });
}

function info(args: string[]): void {
  const { rest } = getopt("info", args, "n", 0);
  withState(stateFile, (s) => {
    const text = infoText(s);
    if (rest[0] === undefined) return out(text);
    for (const line of text.split("\n"))
      if (line.startsWith(rest[0])) out(`${line.slice(line.indexOf(": ") + 2)}\n`);
  });
}

async function save(args: string[]): Promise<void> {
  const { rest } = getopt("save", args, "cp", 2);
  const [q = "", file = ""] = rest;
  const d = withState(stateFile, (s) => mustFind(s, q));
  const config = JSON.stringify({ ...d, pauseCount: 0 });
  try {
    writeFileSync(file, `${SAVE_MAGIC}${config}\n`);
  } catch {
    throw new Exit(1, `Failed to open temp file ${file} for writing\n`);
  }
  err(`Saving to ${file} new xl format (info 0x3/0x0/${config.length})\n`);
  err(`xc: info: Saving domain ${d.domid}, type x86 ${d.type.toUpperCase()}\n`);
  await step();
  withState(stateFile, (s) => {
    s.domains = s.domains.filter((x) => x.uuid !== d.uuid); // suspended, then destroyed
  });
}

async function restore(args: string[]): Promise<void> {
  const { flags, rest } = getopt("restore", args, "FcpdeVA", 1);
  const file = rest.at(-1) ?? "";
  let text: string;
  try {
    text = readFileSync(file, "latin1");
  } catch {
    throw new Exit(1, "Can't open restore file: No such file or directory\n");
  }
  if (!text.startsWith(SAVE_MAGIC))
    throw new Exit(1, "File has wrong magic number - corrupt or for a different tool?\n");
  const saved = JSON.parse(text.slice(SAVE_MAGIC.length)) as StandinDomain;
  const len = text.length - SAVE_MAGIC.length;
  err(
    `Loading new save file ${file} (new xl fmt info 0x3/0x0/${len})\n Savefile contains xl domain config in JSON format\n`,
  );
  err("Parsing config from <saved>\n");
  await step();
  err(`xc: info: Found x86 ${saved.type.toUpperCase()} domain from Xen 4.17\nxc: info: Restoring domain\n`);
  withState(stateFile, (s) => domainFromConfig(s, { ...saved.config, uuid: saved.uuid }, flags.has("p")));
  err(
    "xc: info: Restore successful\nxc: info: XenStore: mfn 0xfeffc, dom 0, evt 1\nxc: info: Console: mfn 0xfefff, dom 0, evt 2\n",
  );
}

export const COMMANDS: Record<string, (args: string[]) => void | Promise<void>> = {
  create,
  list,
  info,
  domid,
  destroy,
  save,
  restore,
  shutdown: (a) => shutdownOrReboot("shutdown", a),
  reboot: (a) => shutdownOrReboot("reboot", a),
  pause: (a) => pause("pause", a),
  unpause: (a) => pause("unpause", a),
  migrate: (a) => migrate(a, stateFile),
};

async function main(argv: string[]): Promise<number> {
  const args = argv.filter((a, i) => !(i === 0 && a === "-v")); // xl's global -v: more logging
  const [cmd, ...rest] = args;
  if (!stateFile) {
    err("xl stand-in: XL_STANDIN_STATE is not set\n");
    return 1;
  }
  const fn = cmd ? COMMANDS[cmd] : undefined;
  if (!fn) {
    err("command not implemented\n");
    return 1;
  }
  try {
    await fn(rest);
    return 0;
  } catch (e) {
    if (!(e instanceof Exit)) throw e;
    err(e.message);
    return e.code;
  }
}

process.exitCode = await main(process.argv.slice(2));
