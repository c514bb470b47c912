/**
 * The bridge agent's config file for one site of the local stack (simulated hosts only).
 * Shape: the contract of `bridge-agent/main.ts --config <file.json>`.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { JWK } from "jose";
import { visibilityTimeoutSeconds } from "../../shared/config/queues.ts";

/**
 * A host of the local stack: simulated by default. A real hypervisor host (`kind` kvm or xen, as in
 * the KVM test bed) gives its `address` and the agent's settings for it in `agentHost` (ssh, kvm, …),
 * which go into the agent's config as they are.
 */
export type SimHost = {
  id: string;
  vcpus: number;
  memoryMiB: number;
  devices?: Record<string, number>;
  kind?: "sim" | "kvm" | "xen";
  address?: string;
  agentHost?: Record<string, unknown>;
};

/** The address a host is registered and driven at. */
export const hostAddress = (h: SimHost) => h.address ?? simAddress(h.id);

export type AgentConfigInput = {
  dataDir: string;
  site: string;
  hosts: SimHost[];
  sqsEndpoint: string;
  region: string;
  commandQueueUrl: string;
  resultsQueueUrl: string;
  controlPlanePublicKey: JWK;
  signingKey: JWK;
  /** Multiplies the simulated hypervisor's delays (1 = realistic, 0.05 = tests). */
  delayScale: number;
  pollWaitSeconds: number;
  inventoryIntervalSeconds: number;
  logLevel: "debug" | "info" | "warn" | "error";
  /** Merged over the generated settings. */
  settings?: Record<string, unknown> | undefined;
};

/**
 * How long a stopping agent lets in-flight operations finish before handing their commands back.
 * Below the stack's SIGKILL grace (5 s), so a stop is graceful; the control plane retries the rest.
 */
const SHUTDOWN_GRACE_SECONDS = 2;

/**
 * A simulated host's address. `sim://<id>` would read better, but the host contract's address
 * pattern (shared/contracts/host.ts HostAddress) allows no `/`, so the API would refuse it.
 */
export const simAddress = (hostId: string) => `${hostId}.sim`;

/** Writes `<dataDir>/agents/<site>.json` (mode 0600: it holds the agent's private key); returns its path. */
export async function writeAgentConfig(input: AgentConfigInput): Promise<string> {
  const simDir = join(input.dataDir, "sim");
  const agentsDir = join(input.dataDir, "agents");
  await Promise.all([mkdir(simDir, { recursive: true }), mkdir(agentsDir, { recursive: true })]);
  const config = {
    agentId: `agent-${input.site}`,
    site: input.site,
    sqs: {
      region: input.region,
      endpoint: input.sqsEndpoint,
      commandQueueUrl: input.commandQueueUrl,
      resultsQueueUrl: input.resultsQueueUrl,
    },
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
    controlPlanePublicKey: input.controlPlanePublicKey,
    signingKey: input.signingKey,
    pollWaitSeconds: input.pollWaitSeconds,
    visibilityTimeoutSeconds: visibilityTimeoutSeconds.agent,
    inventoryIntervalSeconds: input.inventoryIntervalSeconds,
    shutdownGraceSeconds: SHUTDOWN_GRACE_SECONDS,
    logLevel: input.logLevel,
    ...input.settings,
    hosts: input.hosts.map((h) =>
      h.kind && h.kind !== "sim"
        ? { id: h.id, kind: h.kind, address: hostAddress(h), ...h.agentHost }
        : simHostConfig(h, input, simDir),
    ),
  };
  const file = join(agentsDir, `${input.site}.json`);
  await writeFile(file, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  return file;
}

function simHostConfig(h: SimHost, input: AgentConfigInput, simDir: string) {
  return {
    id: h.id,
    kind: "sim",
    address: simAddress(h.id),
    sim: {
      // Devices are the control plane's to place (registered with the host); the agent contract's
      // simulated capacity has vCPUs and memory only.
      capacity: { vcpus: h.vcpus, memoryMiB: h.memoryMiB },
      delayScale: input.delayScale,
      // Under dataDir, so simulated domains survive a restart of the stack.
      statePath: join(simDir, `${h.id}.json`),
    },
  };
}
