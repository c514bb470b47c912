/**
 * Configuration of the bridge agent: one JSON file given by `--config <path>`, parsed in main().
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { HostAddress, HypervisorKind, Name } from "../shared/contracts/index.ts";
import { DnsPluginConfig } from "./plugins/dns/config.ts";
import { SshHostConfig } from "./transport/ssh-config.ts";

/** An Ed25519 JWK; `d` is required for private keys. */
const Ed25519Jwk = z.looseObject({
  kty: z.literal("OKP"),
  crv: z.literal("Ed25519"),
  x: z.string().min(1),
  kid: z.string().optional(),
});

/** Settings of the in-memory simulated hypervisor, for hosts of kind `sim`. */
export const SimHostConfig = z.strictObject({
  /** What the simulated host offers; starts beyond it fail with `insufficient_resources`. */
  capacity: z
    .strictObject({ vcpus: z.number().int().min(1), memoryMiB: z.number().int().min(64) })
    .default({ vcpus: 16, memoryMiB: 32_768 }),
  /** Multiplies every simulated delay (start ~300 ms, migrate ~1 s, ...): 0 is instant, 0.01 for tests. */
  delayScale: z.number().min(0).max(100).default(1),
  /**
   * File where this host's domains (and whether it was powered off by a fence) are kept across
   * restarts (JSON); in memory only when absent. While a file `<statePath>.unreachable` exists the
   * host cannot be reached: a switch for tests of host loss from outside the agent's process.
   */
  statePath: z.string().min(1).optional(),
  /** Base images present on the host; a start naming another fails with `image_not_found`. */
  images: z.array(z.string().min(1)).default(["debian-12", "ubuntu-24.04", "alpine-3.20"]),
});
export type SimHostConfig = z.infer<typeof SimHostConfig>;

/** How the other hosts' libvirt reaches this host when it is a migration target (`qemu+ssh`). */
export const KvmMigrationConfig = z.strictObject({
  /** SSH user on this host for libvirt's tunnel. */
  user: z
    .string()
    .regex(/^[a-z_][a-z0-9_-]{0,31}$/)
    .default("root"),
  /** This host's sshd port. */
  port: z.number().int().min(1).max(65_535).default(22),
  /** Key the source host uses (a path on the source host). */
  keyfile: z
    .string()
    .regex(/^\/[A-Za-z0-9._/-]+$/)
    .optional(),
  /**
   * Skip host key checking between hosts. Only for test beds: in production each host's
   * known_hosts holds the others' keys (provisioned with the hosts).
   */
  noVerify: z.boolean().default(false),
});

/** A host bridge guests plug into. */
const GuestNic = z.strictObject({
  /** Linux interface name of the bridge. */
  bridge: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/),
  /** 802.1Q tag for guests without one of their own (Open vSwitch bridges only). */
  vlan: z.number().int().min(1).max(4094).optional(),
});

export const KvmHostConfig = z.strictObject({
  /** libvirt connection URI on the host. */
  uri: z
    .string()
    .regex(/^qemu(\+[a-z]+)?:\/\/[A-Za-z0-9.@:/_-]*$/)
    .default("qemu:///system"),
  /** `kvm`, or `qemu` (TCG) where the host has no /dev/kvm. */
  domainType: z.enum(["kvm", "qemu"]).default("kvm"),
  /** Base images (`<imagesDir>/<image>.qcow2`) and overlays. */
  imagesDir: z
    .string()
    .regex(/^\/[A-Za-z0-9._/-]+$/)
    .optional(),
  migration: KvmMigrationConfig.default({ user: "root", port: 22, noVerify: false }),
  /**
   * Bridges each new domain gets a NIC on, in order (none when absent: guests have no network). The
   * first carries the VM's address from the IP manager: MAC from the address, the range's VLAN tag
   * (VLANs need Open vSwitch bridges).
   */
  nics: z.array(GuestNic).max(8).optional(),
});
export type KvmHostConfig = z.infer<typeof KvmHostConfig>;

export const XenHostConfig = z.strictObject({
  /** Where configs and saved domains live on the host (dom0). */
  stateDir: z
    .string()
    .regex(/^\/[A-Za-z0-9._/-]+$/)
    .optional(),
  /** The bridge new domains get their NIC on (none when absent); it carries the VM's IP manager address. */
  network: GuestNic.optional(),
});

/**
 * How the agent fences a host: powers it off out of band (its BMC, a switched PDU) so that its VMs
 * can restart elsewhere without ever running twice. `argv` runs on the agent's machine, without a
 * shell, with USHER_FENCE_HOST_ID, USHER_FENCE_HOST_ADDRESS and USHER_FENCE_TASK_ID in its
 * environment; exit 0 means the host is off, e.g.
 * `["ipmitool", "-I", "lanplus", "-H", "bmc-7", "-U", "usher", "-f", "/etc/usher/ipmi.pw", "chassis", "power", "off"]`.
 * `verifyArgv`, when given, runs next and must exit 0 too (a script that checks `chassis power status`).
 */
export const FenceConfig = z.strictObject({
  argv: z.array(z.string().min(1)).min(1),
  verifyArgv: z.array(z.string().min(1)).min(1).optional(),
  /**
   * Each command's time limit (killed after it, and the fence fails). With verifyArgv, both must fit
   * in the agent's visibilityTimeoutSeconds, or the task is delivered again while it still runs.
   * The default, 25, keeps a fence with its verification (2 × 25 s) inside the default 60 s.
   */
  timeoutSeconds: z.number().min(0.1).max(600).default(25),
});
export type FenceConfig = z.infer<typeof FenceConfig>;

export const HostConfig = z.strictObject({
  /** The host's id as registered in the control plane; commands name it in `hostId`. */
  id: Name,
  /** Hypervisor on the host; selects the driver. */
  kind: HypervisorKind,
  /** How the agent reaches the host (SSH address for kvm/xen; informational for sim). */
  address: HostAddress,
  /** Only for `sim` hosts; defaults apply when absent. */
  sim: SimHostConfig.optional(),
  /** How the agent logs in (kvm and xen hosts): user, key, and the pinned host key fingerprint. */
  ssh: SshHostConfig.optional(),
  /** Only for `kvm` hosts. */
  kvm: KvmHostConfig.optional(),
  /** Only for `xen` hosts. */
  xen: XenHostConfig.optional(),
  /**
   * How to fence the host before an evacuation. Without it, a `sim` host is fenced by powering the
   * simulated host off, and a kvm or xen host cannot be fenced (the evacuation fails; nothing moves).
   */
  fence: FenceConfig.optional(),
});
export type HostConfig = z.infer<typeof HostConfig>;

export const AgentConfig = z
  .strictObject({
    /** This agent's name, carried in inventory reports and logs. */
    agentId: z.string().min(1).max(128),
    /** The site this agent serves: it only accepts commands addressed to it. */
    site: Name,
    sqs: z.strictObject({
      /** AWS region of the queues. */
      region: z.string().min(1).default("us-east-1"),
      /** Endpoint override (fauxqs locally); AWS's own when absent. */
      endpoint: z.url().optional(),
      /** This site's command queue (control plane → agent). */
      commandQueueUrl: z.url(),
      /** The deployment's results queue (agent → control plane). */
      resultsQueueUrl: z.url(),
    }),
    /** Static credentials, for local emulators; the AWS default chain when absent. */
    credentials: z
      .strictObject({ accessKeyId: z.string().min(1), secretAccessKey: z.string().min(1) })
      .optional(),
    /** The control plane's Ed25519 public JWK: commands that it does not verify are refused. */
    controlPlanePublicKey: Ed25519Jwk,
    /** This agent's Ed25519 private JWK, which signs results and inventory. */
    signingKey: Ed25519Jwk.extend({ d: z.string().min(1) }),
    /** Long-poll wait of each receive (SQS allows up to 20; at least 1 so an idle agent does not spin). */
    pollWaitSeconds: z.number().int().min(1).max(20).default(20),
    /** How long a received command stays hidden; extended every half of it while the operation runs. */
    visibilityTimeoutSeconds: z.number().int().min(2).max(43_200).default(60),
    /**
     * How long an operation runs before the agent reports it `running`. An operation that ends sooner
     * (most do) is reported once, by its result: a report fewer each way (a message, an invocation,
     * writes). Keep it well under the control plane's re-dispatch delay (30 s). 0: report at once.
     */
    runningReportAfterSeconds: z.number().min(0).max(20).default(2),
    /** Operations run at once; the agent receives no more than the free slots. */
    maxConcurrentOps: z.number().int().min(1).max(256).default(8),
    /** Period of inventory reports. */
    inventoryIntervalSeconds: z.number().min(0.1).max(86_400).default(30),
    /** On stop, how long in-flight operations may finish before their commands are handed back. */
    shutdownGraceSeconds: z.number().min(0).max(3_600).default(30),
    /** How long a guest may take to shut down on ACPI before it is forced off. */
    guestShutdownTimeoutSeconds: z.number().min(0).max(3_600).default(60),
    /** Deliveries of a failing task (an on-premise plugin, a fence) before it is reported failed. */
    taskMaxAttempts: z.number().int().min(1).max(100).default(5),
    /**
     * The DNS plugin's settings (nameserver, zones, TSIG key, TTL): where `dns` tasks update VMs' A and
     * PTR records. Without them a `dns` task fails with `plugin_unconfigured`.
     */
    dns: DnsPluginConfig.optional(),
    /** The hypervisor hosts this agent drives. */
    hosts: z.array(HostConfig).min(1),
    /** Least severe log level written. */
    logLevel: z.enum(["debug", "info", "warn", "error"]).default("info"),
  })
  .superRefine((cfg, ctx) => {
    const seen = new Set<string>();
    for (const [i, host] of cfg.hosts.entries()) {
      if (seen.has(host.id))
        ctx.addIssue({ code: "custom", path: ["hosts", i, "id"], message: `duplicate host id ${host.id}` });
      seen.add(host.id);
      if (host.kind !== "sim" && !host.ssh) {
        ctx.addIssue({
          code: "custom",
          path: ["hosts", i, "ssh"],
          message: `a ${host.kind} host needs ssh settings`,
        });
      }
      if ((host.kvm && host.kind !== "kvm") || (host.xen && host.kind !== "xen")) {
        ctx.addIssue({
          code: "custom",
          path: ["hosts", i, host.kind],
          message: "settings for another hypervisor kind",
        });
      }
      const fenceSeconds = host.fence ? host.fence.timeoutSeconds * (host.fence.verifyArgv ? 2 : 1) : 0;
      if (fenceSeconds >= cfg.visibilityTimeoutSeconds) {
        ctx.addIssue({
          code: "custom",
          path: ["hosts", i, "fence", "timeoutSeconds"],
          message: `a fence may take ${fenceSeconds} s: keep it below visibilityTimeoutSeconds (${cfg.visibilityTimeoutSeconds})`,
        });
      }
      if (host.sim && host.kind !== "sim") {
        ctx.addIssue({
          code: "custom",
          path: ["hosts", i, "sim"],
          message: "only hosts of kind sim take sim settings",
        });
      }
    }
  });
export type AgentConfig = z.infer<typeof AgentConfig>;

/** Validates a parsed config object; throws one readable error naming every bad field. */
export function parseAgentConfig(json: unknown): AgentConfig {
  const parsed = AgentConfig.safeParse(json);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".") || "(config)"}: ${i.message}`);
    throw new Error(`invalid agent configuration:\n${lines.join("\n")}`);
  }
  return parsed.data;
}

/** Reads and validates the config file at `path`. */
export function loadAgentConfig(path: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (cause) {
    throw new Error(`cannot read agent configuration ${path}: ${(cause as Error).message}`, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new Error(`agent configuration ${path} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
  return parseAgentConfig(json);
}

/** The sim settings of a host, with defaults filled in. */
export function simSettings(host: HostConfig): SimHostConfig {
  return host.sim ?? SimHostConfig.parse({});
}
