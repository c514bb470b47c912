/**
 * Pure argv builders for `xl` and the few file helpers the driver runs on a Xen host (dom0). Every
 * command is an argv array for a `CommandRunner` — never a shell string — and every value that goes
 * into one is validated first: domains are addressed only as `usher-<vmId>` (config.ts), paths are
 * absolute and plain, a migration target is a bare host name or address. Parsers of what these
 * commands print are in parse.ts.
 */
import { assertAbsolutePath, domainName } from "./config.ts";
import { UnsafeValueError } from "./errors.ts";

// xl hands the migration host to `sh -c "exec ssh <host> xl migrate-receive"` on dom0, so only a bare
// host name, IPv4 or IPv6 address passes (no brackets: they are shell glob characters).
const HOST = /^[A-Za-z0-9:][A-Za-z0-9.:-]{0,252}$/;

/** A host as `xl migrate` takes it. */
export function assertMigrationHost(host: string): string {
  if (HOST.test(host)) return host;
  throw new UnsafeValueError(`migration host is not a plain host name or address: ${JSON.stringify(host)}`);
}

/** `xl create` reads an argument with `=` as extra config, so the config path must not have one. */
const cfgPath = (path: string) => assertAbsolutePath(path, "config path");

export const xl = {
  /** All domains (Domain-0 first), or one: `Name ID Mem VCPUs State Time(s)`. */
  list: (vmId?: string) => (vmId === undefined ? ["xl", "list"] : ["xl", "list", domainName(vmId)]),
  /** Every guest's libxl config as JSON (`c_info.name`, `c_info.uuid`, `b_info.max_vcpus`, ...). */
  listLong: () => ["xl", "list", "-l"],
  /** `key : value` lines: nr_cpus, total_memory, free_memory (MiB), ... */
  info: () => ["xl", "info"],
  domid: (vmId: string) => ["xl", "domid", domainName(vmId)],
  create: (cfg: string) => ["xl", "create", cfgPath(cfg)],
  /** Asks the guest to power off; `-F` falls back to an ACPI power button for guests without PV drivers. */
  shutdown: (vmId: string) => ["xl", "shutdown", "-F", domainName(vmId)],
  reboot: (vmId: string) => ["xl", "reboot", "-F", domainName(vmId)],
  destroy: (vmId: string) => ["xl", "destroy", domainName(vmId)],
  pause: (vmId: string) => ["xl", "pause", domainName(vmId)],
  unpause: (vmId: string) => ["xl", "unpause", domainName(vmId)],
  /** Writes memory and config to `file`, then destroys the domain. */
  save: (vmId: string, file: string) => ["xl", "save", domainName(vmId), assertAbsolutePath(file)],
  /** Recreates the domain from a save; `paused` keeps it paused. */
  restore: (file: string, opts: { paused?: boolean } = {}) => [
    "xl",
    "restore",
    ...(opts.paused ? ["-p"] : []),
    assertAbsolutePath(file),
  ],
  /** Live migration over ssh to `host`; `paused` leaves the domain paused there. Progress on stderr. */
  migrate: (vmId: string, host: string, opts: { paused?: boolean } = {}) => [
    "xl",
    "migrate",
    ...(opts.paused ? ["-p"] : []),
    domainName(vmId),
    assertMigrationHost(host),
  ],
} as const;

/** File helpers, each a fixed program with validated paths: no shell, contents only on stdin. */
export const fileCmd = {
  mkdir: (dir: string) => ["mkdir", "-p", "--", assertAbsolutePath(dir)],
  /** Writes stdin to `path` (tee's copy on stdout is ignored). */
  write: (path: string) => ["tee", "--", assertAbsolutePath(path)],
  read: (path: string) => ["cat", "--", assertAbsolutePath(path)],
  move: (from: string, to: string) => ["mv", "-f", "--", assertAbsolutePath(from), assertAbsolutePath(to)],
  remove: (...paths: string[]) => ["rm", "-f", "--", ...paths.map((p) => assertAbsolutePath(p))],
  /** Prints the name of each path that exists (exit 1 when some do not). */
  existing: (...paths: string[]) => ["stat", "-c", "%n", "--", ...paths.map((p) => assertAbsolutePath(p))],
  /** The meta line of every config in `dir`, one per line. */
  metas: (dir: string) => [
    "grep",
    "-r",
    "-h",
    "--include=*.cfg",
    "-e",
    "^# usher-meta: ",
    "--",
    assertAbsolutePath(dir),
  ],
  /** The managed saves in `dir`, one path per line. */
  saves: (dir: string) => [
    "find",
    assertAbsolutePath(dir),
    "-maxdepth",
    "1",
    "-type",
    "f",
    "-name",
    "*.save",
  ],
  /** A qcow2 overlay over a base image (the base is never written). */
  overlay: (base: string, overlay: string) => [
    "qemu-img",
    "create",
    "-q",
    "-f",
    "qcow2",
    "-F",
    "qcow2",
    "-b",
    assertAbsolutePath(base),
    assertAbsolutePath(overlay),
  ],
} as const;
