/**
 * The KVM test bed: real hypervisor hosts on this machine, each its own libvirtd + virtlogd + sshd in
 * a mount namespace of its own (see host.ts), reachable over real SSH on its own loopback address,
 * with live migration between them.
 *
 *   const support = kvmTestbedSupport();            // { ok: false, reason } where it cannot run
 *   const bed = await startKvmTestbed();            // kvm-1 = 127.0.0.11:2201, kvm-2 = 127.0.0.12:2202
 *   await bed.exec("kvm-2", ["virsh", "-c", "qemu:///system", "list", "--all"]);
 *   await bed.stop();                               // safe twice; throws if anything was left
 */
import { readFileSync, rmSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureLibvirtAccounts } from "../../bridge-agent/drivers/kvm/testing/accounts.ts";
import type { SimHost } from "../../infra/local/agent-config.ts";
import { type BedPaths, knownHostsLine } from "./files.ts";
import { execIn, generateEd25519Key, type HostSpec, type HostState, prepareHost, startHost } from "./host.ts";
import { type HostProcess, hostProcesses, isOurs, recordedPids } from "./ownership.ts";
import { type ExecResult, type RunOptions, run, runOk } from "./proc.ts";
import { kvmTestbedSupport, kvmUsable } from "./support.ts";
import { killHostNow, stopHost } from "./teardown.ts";

export { disklessGuestXml } from "./files.ts";
export type { ExecResult } from "./proc.ts";
export { kvmTestbedSupport } from "./support.ts";

export type TestbedOptions = {
  /** How many hosts (kvm-1, kvm-2, ...). Default 2. */
  hostCount?: number;
  /** Loopback address of kvm-1; kvm-N gets the next ones. Default 127.0.0.11. */
  firstAddress?: string;
  /** SSH port of kvm-1; kvm-N gets basePort + N - 1. "auto": free ports. Default 2201. */
  basePort?: number | "auto";
  /** Guest type; default "kvm" where /dev/kvm is usable, else "qemu" (TCG). */
  domainType?: "kvm" | "qemu";
  /** Where the bed's temp dir is made. Default os.tmpdir(). */
  tmpRoot?: string;
  /** SIGKILL every process of the bed if this Node process exits without stop(). Default true. */
  killOnExit?: boolean;
};

export type TestbedHost = {
  id: string;
  address: string;
  port: number;
  /** OpenSSH fingerprint ("SHA256:...") of the host's ed25519 key, as `ssh-keygen -lf` prints it. */
  hostKeyFingerprint: string;
  /** The host's public key line ("ssh-ed25519 AAAA... comment"), for a known_hosts file. */
  hostPublicKey: string;
  /** The libvirt URI on the host itself (after an SSH login, or through exec()). */
  libvirtUri: "qemu:///system";
  /**
   * Destination URI for `virsh migrate` run on this host: libvirt reaches `target` over SSH with
   * the bed's client key; the host key is checked against the bed's known_hosts.
   */
  migrationUri(target: TestbedHost | string): string;
  /** `--migrateuri` for migrations *to* this host: the data stream goes to its own address. */
  migrationDataUri: string;
};

export type BedState = { dir: string; paths: BedPaths; hosts: HostState[] };

export type Testbed = {
  hosts: TestbedHost[];
  /** The bed's client key (ed25519, no passphrase), authorized for root on every host. */
  clientKeyPath: string;
  clientPrivateKey: string;
  clientPublicKey: string;
  /** known_hosts pinning every host's key at its address and port. */
  knownHostsPath: string;
  domainType: "kvm" | "qemu";
  /** The bed's temp dir (removed by stop()). */
  dir: string;
  /** Runs a command inside a host's namespace (no SSH): what is really on that host. */
  exec(hostId: string, command: string[], opts?: RunOptions): Promise<ExecResult>;
  /** Every process the bed started, by name ("kvm-1/libvirtd", "kvm-1/namespace", ...). */
  pids: Record<string, number>;
  /** Every process now running on the bed's hosts (daemons, qemu, ssh logins), found by namespace. */
  processes(): HostProcess[];
  /** Plain-data state for stopKvmTestbed() from another process. */
  state(): BedState;
  /** Destroys guests, ends every process by pid, removes the temp dir. Safe twice. */
  stop(): Promise<void>;
};

/**
 * The bed's hosts as a local stack's site lists them (4 vCPUs, 2 GiB each): the agent reaches each
 * over SSH as root with the bed's key, its host key pinned, and migrates between them likewise.
 */
export function stackHosts(bed: Testbed): SimHost[] {
  return bed.hosts.map((h) => ({
    id: h.id,
    kind: "kvm" as const,
    address: h.address,
    vcpus: 4,
    memoryMiB: 2048,
    agentHost: {
      ssh: {
        user: "root",
        port: h.port,
        privateKeyPath: bed.clientKeyPath,
        hostKeyFingerprint: h.hostKeyFingerprint,
      },
      kvm: {
        domainType: bed.domainType,
        migration: { user: "root", port: h.port, keyfile: bed.clientKeyPath },
      },
    },
  }));
}

/** Beds whose processes the 'exit' hook kills if stop() was never called. */
const unstopped = new Set<BedState>();
let exitHookInstalled = false;

/** Starts the hosts (in parallel), each with a fresh host key; ~2-4 s on these machines. */
export async function startKvmTestbed(opts: TestbedOptions = {}): Promise<Testbed> {
  const support = kvmTestbedSupport();
  if (!support.ok) throw new Error(`the KVM test bed cannot run here: ${support.reason}`);
  ensureLibvirtAccounts();
  const count = opts.hostCount ?? 2;
  const addresses = Array.from({ length: count }, (_, i) => nthAddress(opts.firstAddress ?? "127.0.0.11", i));
  const ports = await choosePorts(addresses, opts.basePort ?? 2201);

  const dir = await mkdtemp(join(opts.tmpRoot ?? tmpdir(), "usher-kvm-testbed-"));
  const paths: BedPaths = {
    clientKey: join(dir, "client_key"),
    authorizedKeys: join(dir, "authorized_keys"),
    knownHosts: join(dir, "known_hosts"),
  };
  const state: BedState = { dir, paths, hosts: [] };
  if (opts.killOnExit ?? true) installExitHook(state);
  try {
    const clientPublicKey = await generateEd25519Key(paths.clientKey, "usher-kvm-testbed");
    await writeFile(paths.authorizedKeys, `${clientPublicKey}\n`);
    const specs: HostSpec[] = addresses.map((address, i) => ({
      id: `kvm-${i + 1}`,
      address,
      port: ports[i]!,
      dir: join(dir, `kvm-${i + 1}`),
    }));
    const keys = await Promise.all(specs.map((s) => prepareHost(s, paths)));
    const known = specs.map((s, i) => knownHostsLine(s.address, s.port, keys[i]!.publicKey));
    await writeFile(paths.knownHosts, `${known.join("\n")}\n`);

    // allSettled: when one host fails, the others must have finished starting (and be recorded in
    // `state`) before the cleanup below stops them.
    const started = await Promise.allSettled(
      specs.map((s, i) =>
        startHost(s, (h) => {
          state.hosts[i] = h;
        }),
      ),
    );
    const failed = started.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;

    const hosts: TestbedHost[] = specs.map((s, i) => ({
      id: s.id,
      address: s.address,
      port: s.port,
      hostKeyFingerprint: keys[i]!.fingerprint,
      hostPublicKey: keys[i]!.publicKey,
      libvirtUri: "qemu:///system",
      migrationUri: (target) => {
        const t = typeof target === "string" ? specs.find((x) => x.id === target) : target;
        if (!t) throw new Error(`no test-bed host ${String(target)}`);
        return `qemu+ssh://root@${t.address}:${t.port}/system?keyfile=${paths.clientKey}`;
      },
      migrationDataUri: `tcp://${s.address}`,
    }));
    const host = (id: string) => {
      const h = state.hosts.find((x) => x.id === id);
      if (!h) throw new Error(`no test-bed host ${id}`);
      return h;
    };
    const pids: Record<string, number> = {};
    for (const h of state.hosts) {
      pids[`${h.id}/namespace`] = h.holderPid;
      for (const [name, pid] of Object.entries(h.daemons)) pids[`${h.id}/${name}`] = pid;
    }
    let stopping: Promise<void> | undefined;
    return {
      hosts,
      clientKeyPath: paths.clientKey,
      clientPrivateKey: readFileSync(paths.clientKey, "utf8"),
      clientPublicKey,
      knownHostsPath: paths.knownHosts,
      domainType: opts.domainType ?? (kvmUsable() ? "kvm" : "qemu"),
      dir,
      exec: (hostId, command, runOpts) => execIn(host(hostId), command, runOpts),
      pids,
      processes: () => state.hosts.flatMap(hostProcesses),
      state: () => structuredClone(state),
      stop: () => {
        stopping ??= stopKvmTestbed(state);
        return stopping;
      },
    };
  } catch (error) {
    await stopKvmTestbed(state).catch(() => {});
    throw error;
  }
}

/**
 * Stops a bed from its state (also one another process started): every host stopped (see
 * stopHost), the temp dir removed. Throws, naming them, if any process could not be ended.
 */
export async function stopKvmTestbed(state: BedState): Promise<void> {
  const left = (await Promise.all(state.hosts.filter(Boolean).map(stopHost))).flat();
  const alive = state.hosts
    .filter(Boolean)
    .flatMap((h) => recordedPids(h).filter((pid) => isOurs(h, pid)))
    .filter((pid) => !left.some((p) => p.pid === pid));
  unstopped.delete(state);
  await rm(state.dir, { recursive: true, force: true });
  if (left.length > 0 || alive.length > 0) {
    const names = left
      .map((p) => `${p.host}/${p.command}[${p.pid}]`)
      .concat(alive.map((pid) => `pid ${pid}`));
    throw new Error(`KVM test bed: processes left after stop: ${names.join(", ")}`);
  }
}

function nthAddress(first: string, n: number): string {
  const parts = first.split(".").map(Number);
  const last = (parts[3] ?? 0) + n;
  if (parts.length !== 4 || parts[0] !== 127 || last > 254)
    throw new Error(`bad test-bed address ${first} + ${n}`);
  return `${parts.slice(0, 3).join(".")}.${last}`;
}

/** The SSH port of each host, checked free on its address (a clear error beats sshd's). */
async function choosePorts(addresses: string[], base: number | "auto"): Promise<number[]> {
  return Promise.all(
    addresses.map(async (address, i) => {
      const port = base === "auto" ? 0 : base + i;
      try {
        return await listenOnce(address, port);
      } catch (error) {
        throw new Error(`test-bed port ${address}:${port} is not free (pass another basePort)`, {
          cause: error,
        });
      }
    }),
  );
}

function listenOnce(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen({ host, port, exclusive: true }, () => {
      const a = server.address();
      const got = typeof a === "object" && a ? a.port : 0;
      server.close(() => resolve(got));
    });
  });
}

function installExitHook(state: BedState): void {
  unstopped.add(state);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous: no graceful destroy, only SIGKILL and rm.
  process.on("exit", () => {
    for (const s of unstopped) {
      for (const h of s.hosts.filter(Boolean)) killHostNow(h);
      rmSync(s.dir, { recursive: true, force: true });
    }
  });
}
