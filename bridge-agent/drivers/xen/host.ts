/**
 * One Xen host (dom0) as the driver sees it: a `CommandRunner` plus the state folder, with the small
 * queries every operation needs (what is there for a vmId, free capacity, Usher's configs). Transport
 * failures become `DriverError`s here, where the commands run; non-zero exits are classified from
 * xl's stderr (parse.ts).
 */
import type { CommandRunner, RunOptions, RunResult } from "../../transport/runner.ts";
import { DriverError, DriverErrorCode as E } from "../errors.ts";
import { fileCmd, xl } from "./commands.ts";
import { parseConfigMeta, type XenMeta, type XenPaths, xenPaths } from "./config.ts";
import { XlCommandError } from "./errors.ts";
import {
  classifyXlFailure,
  freeCapacity,
  hostResources,
  parseXlInfo,
  parseXlList,
  powerStateOfFlags,
  type XlListRow,
} from "./parse.ts";

/** What a host has for one vmId: its running domain (if any), config and managed save. */
export type Probe = { row?: XlListRow; hasCfg: boolean; hasSave: boolean };

export type Capacity = { vcpus: number; memoryMiB: number };

type Ctx = { signal?: AbortSignal | undefined };

export class XenHost {
  readonly hostId: string;
  readonly runner: CommandRunner;
  readonly stateDir: string;
  private readonly commandTimeoutMs: number;

  constructor(hostId: string, runner: CommandRunner, stateDir: string, commandTimeoutMs: number) {
    this.hostId = hostId;
    this.runner = runner;
    this.stateDir = stateDir;
    this.commandTimeoutMs = commandTimeoutMs;
  }

  paths(vmId: string): XenPaths {
    return xenPaths(this.stateDir, vmId);
  }

  /** Runs argv; a transport failure (or abort) rejects with a DriverError, any exit code resolves. */
  async run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    if (opts.signal?.aborted)
      throw new DriverError(E.aborted, "operation aborted", { cause: opts.signal.reason });
    try {
      return await this.runner.run(argv, { timeoutMs: this.commandTimeoutMs, ...opts });
    } catch (cause) {
      if (opts.signal?.aborted) throw new DriverError(E.aborted, "operation aborted", { cause });
      if (cause instanceof DriverError) throw cause; // the SSH transport classifies its own failures
      // LocalRunner's RunnerError: `timeout` is a command that hung, `aborted` an abort; any other
      // failure (cannot spawn, runner closed) means the host's tools cannot be reached.
      const code = (cause as { code?: unknown })?.code;
      const why = cause instanceof Error ? cause.message : String(cause);
      throw new DriverError(
        code === "timeout" ? E.timeout : code === "aborted" ? E.aborted : E.hostUnreachable,
        `host ${this.hostId}: ${argv.slice(0, 2).join(" ")} failed: ${why}`,
        { cause },
      );
    }
  }

  /** Runs argv and throws unless it exits 0: a classified DriverError, else an XlCommandError. */
  async ok(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const res = await this.run(argv, opts);
    if (res.code !== 0) throw this.failure(argv, res);
    return res;
  }

  failure(argv: readonly string[], res: RunResult): Error {
    if (res.code === 126 || res.code === 127) {
      return new DriverError(E.hostUnreachable, `${argv[0]} is not runnable on host ${this.hostId}`);
    }
    const code = classifyXlFailure(res.stderr);
    const err = new XlCommandError(argv, res.code, res.stderr);
    return code ? new DriverError(code, `${err.message} (host ${this.hostId})`, { cause: err }) : err;
  }

  /** The domain's `xl list` row, or undefined when there is no such domain. */
  async domain(vmId: string, ctx: Ctx = {}): Promise<XlListRow | undefined> {
    const argv = xl.list(vmId);
    const res = await this.run(argv, ctx);
    if (res.code !== 0) {
      const err = this.failure(argv, res);
      if (err instanceof DriverError && err.code === E.domainNotFound) return undefined;
      throw err;
    }
    return parseXlList(res.stdout).find((r) => r.domid !== 0);
  }

  /** Which of `paths` exist. */
  async existing(paths: string[], ctx: Ctx = {}): Promise<Set<string>> {
    const res = await this.run(fileCmd.existing(...paths), ctx);
    // stat prints the names it found and exits 1 for the others; anything else on stdout is not a path.
    return new Set(res.stdout.split("\n").filter((l) => paths.includes(l)));
  }

  async probe(vmId: string, ctx: Ctx = {}): Promise<Probe> {
    const p = this.paths(vmId);
    const [row, found] = await Promise.all([this.domain(vmId, ctx), this.existing([p.cfg, p.save], ctx)]);
    return { ...(row ? { row } : {}), hasCfg: found.has(p.cfg), hasSave: found.has(p.save) };
  }

  /** The state a probe means: a domain's own; else suspended (save), stopped (config) or absent. */
  static stateOf(p: Probe) {
    if (p.row) return powerStateOfFlags(p.row.flags);
    return p.hasSave ? "suspended" : p.hasCfg ? "stopped" : "absent";
  }

  /** Usher's record in the VM's config, or undefined when there is none (or it is not Usher's). */
  async readMeta(vmId: string, ctx: Ctx = {}): Promise<XenMeta | undefined> {
    const text = await this.readFile(this.paths(vmId).cfg, ctx);
    return text === undefined ? undefined : parseConfigMeta(text);
  }

  async readFile(path: string, ctx: Ctx = {}): Promise<string | undefined> {
    const res = await this.run(fileCmd.read(path), ctx);
    return res.code === 0 ? res.stdout : undefined;
  }

  /** Writes `text` to a temporary file beside `path`, then renames it over `path`. */
  async writeFile(path: string, tmp: string, text: string, ctx: Ctx = {}): Promise<void> {
    await this.ok(fileCmd.mkdir(path.slice(0, path.lastIndexOf("/"))), ctx);
    await this.ok(fileCmd.write(tmp), { ...ctx, stdin: text });
    await this.ok(fileCmd.move(tmp, path), ctx);
  }

  async remove(paths: string[], ctx: Ctx = {}): Promise<void> {
    await this.ok(fileCmd.remove(...paths), ctx);
  }

  /** `xl destroy`; a domain already gone is fine. */
  async destroyDomain(vmId: string, ctx: Ctx = {}): Promise<void> {
    const argv = xl.destroy(vmId);
    const res = await this.run(argv, ctx);
    if (res.code === 0) return;
    const err = this.failure(argv, res);
    if (!(err instanceof DriverError && err.code === E.domainNotFound)) throw err;
  }

  /** Free capacity (see `freeCapacity`), with the `xl list` rows it was computed from. */
  async free(ctx: Ctx = {}): Promise<Capacity & { rows: XlListRow[]; nrCpus: number }> {
    const [info, list] = await Promise.all([this.ok(xl.info(), ctx), this.ok(xl.list(), ctx)]);
    const rows = parseXlList(list.stdout);
    const res = hostResources(parseXlInfo(info.stdout));
    return { ...freeCapacity(res, rows), rows, nrCpus: res.nrCpus };
  }

  async ensureCapacity(need: Capacity, ctx: Ctx = {}): Promise<void> {
    const free = await this.free(ctx);
    if (need.vcpus > free.vcpus || need.memoryMiB > free.memoryMiB) {
      throw new DriverError(
        E.insufficientResources,
        `host ${this.hostId} has ${free.vcpus} vCPUs and ${free.memoryMiB} MiB free; ${need.vcpus} vCPUs and ${need.memoryMiB} MiB needed`,
      );
    }
  }

  /** Every Usher config's meta record on the host, by vmId. */
  async metas(ctx: Ctx = {}): Promise<Map<string, XenMeta>> {
    const res = await this.run(fileCmd.metas(`${this.stateDir}/xen`), ctx);
    // grep: 0 found, 1 none, 2 trouble (a missing folder just means no configs yet).
    if (res.code === 2 && !/No such file or directory/.test(res.stderr)) throw this.failure(["grep"], res);
    const out = new Map<string, XenMeta>();
    for (const line of res.stdout.split("\n")) {
      const meta = parseConfigMeta(line);
      if (meta) out.set(meta.vmId, meta);
    }
    return out;
  }

  /** The vmIds with a managed save on the host. */
  async saved(ctx: Ctx = {}): Promise<Set<string>> {
    const dir = `${this.stateDir}/xen`;
    const res = await this.run(fileCmd.saves(dir), ctx);
    if (res.code !== 0 && !/No such file or directory/.test(res.stderr)) throw this.failure(["find"], res);
    const ids = new Set<string>();
    for (const line of res.stdout.split("\n")) {
      const m = /^(.*)\/([^/]+)\.save$/.exec(line);
      if (m?.[1] === dir && m[2]) ids.add(m[2]);
    }
    return ids;
  }
}
