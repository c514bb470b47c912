/**
 * One libvirt host as the KVM driver sees it: a CommandRunner plus a connection URI, with the
 * lookups every operation starts from. A domain is found by its deterministic UUID (one call)
 * or else its deterministic name, and always confirmed by the vm id in its metadata (a foreign
 * domain with the same name is an error, never "ours"). Used for the driver's own host and, during a migration, for the target host.
 */
import type { PowerState } from "../../../shared/contracts/index.ts";
import type { CommandRunner, RunOptions, RunResult } from "../../transport/runner.ts";
import { DriverError, type DriverErrorCode, DriverErrorCode as E } from "../errors.ts";
import * as cmd from "./commands.ts";
import { codeOf, commandError, KvmError, KvmErrorCode } from "./errors.ts";
import { type DomState, parseDominfo, parseDomstate, parseNodememstats, toPowerState } from "./parse.ts";
import { isUuid, isVmId } from "./validate.ts";
import { type DomainInfo, domainName, domainUuid, parseDomainXml } from "./xml.ts";

export type ExecOptions = Pick<RunOptions, "stdin" | "onStderr" | "signal"> & {
  /** Overrides the host's per-command timeout; 0 for none (migrations run until their deadline). */
  timeoutMs?: number;
};

export type Status = { power: PowerState; raw: DomState };

export class VirshHost {
  readonly hostId: string;
  readonly uri: string;
  private readonly runner: CommandRunner;
  private readonly commandTimeoutMs: number;

  constructor(hostId: string, runner: CommandRunner, uri: string, commandTimeoutMs: number) {
    this.hostId = hostId;
    this.runner = runner;
    this.uri = uri;
    this.commandTimeoutMs = commandTimeoutMs;
  }

  /** Runs argv; a runner failure is `aborted` (signal) or `host_unreachable`, a non-zero exit is not. */
  async exec(argv: string[], opts: ExecOptions = {}): Promise<RunResult> {
    if (opts.signal?.aborted) throw new DriverError(E.aborted, "operation aborted");
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    try {
      return await this.runner.run(argv, {
        ...(opts.stdin !== undefined ? { stdin: opts.stdin } : {}),
        ...(opts.onStderr ? { onStderr: opts.onStderr } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(timeoutMs > 0 ? { timeoutMs } : {}),
      });
    } catch (cause) {
      if (opts.signal?.aborted) throw new DriverError(E.aborted, "operation aborted", { cause });
      if (cause instanceof DriverError) throw cause; // the SSH transport classifies its own failures
      const why = cause instanceof Error ? cause.message : String(cause);
      // A runner error with code `timeout` (transport/local.ts) is a command that hung; any other
      // failure to run the command means the host cannot be used.
      const code = (cause as { code?: unknown }).code === "timeout" ? E.timeout : E.hostUnreachable;
      throw new DriverError(code, `host ${this.hostId}: ${verb(argv)} failed: ${why}`, { cause });
    }
  }

  /** Runs argv and returns its stdout; a non-zero exit becomes the mapped error. */
  async ok(argv: string[], opts: ExecOptions & { fallback?: DriverErrorCode } = {}): Promise<string> {
    const r = await this.exec(argv, opts);
    if (r.code !== 0) throw commandError(verb(argv), this.hostId, r.stderr, opts.fallback);
    return r.stdout;
  }

  /**
   * Runs argv, treating the error codes in `accept` as success (e.g. `invalid_state` from
   * `virsh destroy` of a domain that is already off). Returns whether the command itself succeeded.
   */
  async tolerate(argv: string[], accept: DriverErrorCode[], opts: ExecOptions = {}): Promise<boolean> {
    const r = await this.exec(argv, opts);
    if (r.code === 0) return true;
    const code = codeOf(r.stderr);
    if (code && accept.includes(code)) return false;
    throw commandError(verb(argv), this.hostId, r.stderr);
  }

  /** The domain of `vmId`, or undefined when there is none. */
  async find(vmId: string, signal?: AbortSignal): Promise<DomainInfo | undefined> {
    if (!isVmId(vmId)) return undefined; // no domain can have been made for it
    // The driver defines domains with the UUID derived from the vmId: one call finds those.
    return this.confirm(vmId, await this.info(domainUuid(vmId), signal), signal);
  }

  /**
   * For a start, which defines the domain when this finds none: the domain of `vmId`, or undefined
   * when no domain has the UUID the driver gives it. One call, where find() makes two for a VM that
   * has no domain yet. A domain named `usher-<vmId>` under another UUID may still exist (foreign, or
   * defined by hand): defining then fails with "already exists", and find() decides.
   */
  async findBeforeDefine(vmId: string, signal?: AbortSignal): Promise<DomainInfo | undefined> {
    if (!isVmId(vmId)) return undefined;
    const likely = await this.info(domainUuid(vmId), signal);
    return likely ? this.confirm(vmId, likely, signal) : undefined;
  }

  /** `likely` (the domain under vmId's UUID, if any) when it is vmId's; else the domain by name. */
  private async confirm(
    vmId: string,
    likely: DomainInfo | undefined,
    signal?: AbortSignal,
  ): Promise<DomainInfo | undefined> {
    if (likely?.usher?.vmId === vmId && likely.name === domainName(vmId)) return likely;
    const r = await this.exec(cmd.domuuidOf(this.uri, vmId), { ...(signal ? { signal } : {}) });
    if (r.code !== 0) {
      if (codeOf(r.stderr) === E.domainNotFound) return undefined;
      throw commandError("domuuid", this.hostId, r.stderr);
    }
    const uuid = r.stdout.trim();
    if (!isUuid(uuid))
      throw new KvmError(KvmErrorCode.commandFailed, `domuuid printed ${JSON.stringify(uuid)}`);
    const info = await this.info(uuid, signal);
    if (!info) return undefined; // undefined between the two calls
    if (info.usher?.vmId !== vmId) {
      throw new KvmError(
        KvmErrorCode.foreignDomain,
        `domain ${info.name} (${uuid}) on host ${this.hostId} does not carry Usher metadata for ${vmId}`,
      );
    }
    return info;
  }

  /** The parsed `dumpxml` of a domain, or undefined when it is gone. */
  async info(uuid: string, signal?: AbortSignal): Promise<DomainInfo | undefined> {
    const r = await this.exec(cmd.dumpxml(this.uri, uuid), { ...(signal ? { signal } : {}) });
    if (r.code !== 0) {
      if (codeOf(r.stderr) === E.domainNotFound) return undefined;
      throw commandError("dumpxml", this.hostId, r.stderr);
    }
    return parseDomainXml(r.stdout);
  }

  /** The domain's state; dominfo is asked only for a shut-off domain (managed save or not). */
  async status(uuid: string, signal?: AbortSignal): Promise<Status> {
    const o = signal ? { signal } : {};
    const raw = parseDomstate(await this.ok(cmd.domstate(this.uri, uuid), o));
    if (raw.state !== "shut off" || raw.reason === "saved") return { power: toPowerState(raw), raw };
    const info = parseDominfo(await this.ok(cmd.dominfo(this.uri, uuid), o));
    return { power: toPowerState(raw, info.managedSave), raw };
  }

  /** The state of the domain of `vmId` here; `absent` when there is none. */
  async vmState(vmId: string, signal?: AbortSignal): Promise<PowerState> {
    const found = await this.find(vmId, signal);
    return found ? (await this.status(found.uuid, signal)).power : "absent";
  }

  /** Throws `insufficient_resources` unless the host has `memoryMiB` available now. */
  async ensureMemory(memoryMiB: number, signal?: AbortSignal): Promise<void> {
    const mem = parseNodememstats(await this.ok(cmd.nodememstats(this.uri), signal ? { signal } : {}));
    if (memoryMiB > mem.availableMiB) {
      throw new DriverError(
        E.insufficientResources,
        `host ${this.hostId} has ${mem.availableMiB} MiB available; ${memoryMiB} MiB needed`,
      );
    }
  }

  close(): Promise<void> {
    return this.runner.close();
  }
}

/** The tool and subcommand of an argv from commands.ts (`virsh start`, `qemu-img create`). */
function verb(argv: string[]): string {
  const tool = argv[2] ?? argv[0] ?? "command";
  return tool === "virsh" ? `virsh ${argv[5] ?? ""}`.trim() : `${tool} ${argv[3] ?? ""}`.trim();
}
