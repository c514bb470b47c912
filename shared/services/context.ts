import type { Logger } from "../log.ts";
import type { Plugins } from "../plugins/host.ts";
import type { QueueClient } from "../queue/sqs.ts";
import type { SigningKey } from "../signing/keys.ts";
import type { Db } from "../store/client.ts";
import type { HostCache } from "./host-cache.ts";

/** What every control-plane service needs. Built once per process by `createControlPlane`. */
export type Deps = {
  db: Db;
  queues: QueueClient;
  /** Signs agent commands. */
  signer: SigningKey;
  /** Verifies agent reports: the public key of each site's agent. */
  agentKey: (site: string) => CryptoKey | undefined;
  log: Logger;
  now: () => Date;
  /** The site's plugins (usher.config.ts). */
  plugins: Plugins;
  /** Sites' hosts as this process last read them, for placement (host-cache.ts); absent: always read. */
  hostCache?: HostCache | undefined;
  config: {
    defaultSite: string;
    opTimeoutSeconds: number;
    idempotencyTtlSeconds: number;
    /** Re-send a queued or scheduling operation whose message seems lost after this long. */
    resendAfterSeconds: number;
    /** Re-send the command of an operation the agent has not acknowledged after this long. */
    redispatchAfterSeconds: number;
    /** After its deadline, how long a dispatched operation may still report before the sweep fails it. */
    deadlineGraceSeconds: number;
    /** What reconciliation does with a VM whose host disagrees with its record (see reconcile.ts). */
    driftPolicy: "adopt" | "error";
    /** A host whose agent has not reported it reachable for this long is marked `down`. */
    hostDownAfterSeconds: number;
    /**
     * What confirms a fence before an evacuation restarts anything: `agent`, the agent's report that
     * the host's fence action succeeded; `agent+admin`, that report and then an admin's confirmation.
     */
    evacuateConfirm: "agent" | "agent+admin";
    /** How long the agent has to fence a host and report it (the fence task's deadline). */
    fenceTimeoutSeconds: number;
  };
};

export const DEFAULT_SERVICE_CONFIG = {
  resendAfterSeconds: 10,
  redispatchAfterSeconds: 30,
  deadlineGraceSeconds: 30,
  driftPolicy: "error",
  hostDownAfterSeconds: 120,
  evacuateConfirm: "agent+admin",
  fenceTimeoutSeconds: 300,
} as const satisfies Partial<Deps["config"]>;
