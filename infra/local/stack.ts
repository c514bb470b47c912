/**
 * The local stack: DynamoDB Local, fauxqs, the API, the queue consumers and one bridge agent per site
 * (simulated hosts), each a child process ended by pid. Used by `npm start` (main.ts) and by the
 * cross-component tests (test/support/stack.ts).
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseControlPlaneEnv } from "../../shared/config/control-plane.ts";
import { createLogger, type Level } from "../../shared/log.ts";
import { type SimHost, writeAgentConfig } from "./agent-config.ts";
import { type Child, freePort, type LineSink, spawnChild, waitUntil } from "./child.ts";
import { startDynamoDbLocal } from "./dynamodb.ts";
import {
  agentPublicKeys,
  type LocalKeys,
  loadOrCreateKeys,
  type MintToken,
  TOKEN_ALGORITHM,
  TOKEN_AUDIENCE,
  TOKEN_ISSUER,
  tokenMinter,
  userTokenJwks,
} from "./keys.ts";
import { ensureResources, type Resources } from "./resources.ts";
import { startSqsEmulator } from "./sqs.ts";
import { allOrCleanup, registerHost, waitForAgent } from "./startup.ts";

export type { LineSink } from "./child.ts";
export type StackSite = { name: string; hosts: SimHost[] };

export type StackOptions = {
  /** Keys, agent configs, simulated host state and (with `persist`) the DynamoDB files live here. */
  dataDir: string;
  /** Ports on 127.0.0.1; free ones when absent. */
  apiPort?: number;
  dynamodbPort?: number;
  sqsPort?: number;
  sites: StackSite[];
  /** Processes running only the scheduler consumer. Default 1. */
  schedulerProcesses?: number;
  /** Multiplies the simulated hypervisor's delays. Default 1. */
  delayScale?: number;
  /** Keep DynamoDB data in `<dataDir>/dynamodb` (else in memory). Default false. */
  persist?: boolean;
  /** How often the sweep runs. Default 5. */
  sweepIntervalSeconds?: number;
  /** USHER_OP_TIMEOUT_SECONDS; the control plane's default (600) when absent. */
  opTimeoutSeconds?: number;
  /** USHER_LOG_LEVEL of every control-plane process. Default info. */
  logLevel?: Level;
  /** Agents' SQS long-poll wait. Default 20. */
  agentPollWaitSeconds?: number;
  /** How often agents report inventory. Default 30. */
  agentInventoryIntervalSeconds?: number;
  /** A site config file (USHER_CONFIG) instead of usher.config.ts, for the API and consumers. */
  siteConfig?: string;
  /** Extra environment for the API and consumers (overrides the stack's). */
  extraEnv?: Record<string, string>;
  /** Agent settings merged into each agent's config (e.g. visibilityTimeoutSeconds for crash tests). */
  agentSettings?: Record<string, unknown>;
  /** Every output line of every child, tagged with the child's name. Default: prefixed on stdout. */
  logSink?: LineSink;
  /** Other scripts to run instead of the real entry points (tests of the stack itself). */
  entryPoints?: Partial<EntryPoints>;
};

export type EntryPoints = { api: string; consumers: string; agent: string };

export type Stack = {
  /** `http://127.0.0.1:<port>` */
  apiUrl: string;
  /** The control-plane environment the API and consumers run with (ControlPlaneEnv variables). */
  env: Record<string, string>;
  ports: { api: number; dynamodb: number; sqs: number };
  dataDir: string;
  resources: Resources;
  keys: LocalKeys;
  /** Signs a user token the API accepts. */
  mintToken: MintToken;
  /** An admin token (project `admin`), valid for 12 hours. */
  adminToken: string;
  /** A `user` token for `project` (subject `sub`, default `user-<project>`), valid for 1 hour. */
  userToken(project: string, sub?: string): Promise<string>;
  /** Pid by process name: dynamodb, sqs, api, consumers, scheduler-<n>, agent-<site>. */
  pids: Record<string, number>;
  /** Ends every child by pid (SIGTERM, SIGKILL after 5 s) and waits for the exits. Safe twice. */
  stop(): Promise<void>;
  /** The agent of `site`: its pid, a hard kill (SIGKILL to its process group), and a start again. */
  agent(site: string): {
    pid(): number;
    kill(signal?: NodeJS.Signals): Promise<void>;
    restart(): Promise<void>;
  };
};

const ROOT = resolve(import.meta.dirname, "../..");
const ENTRY: EntryPoints = {
  api: join(ROOT, "functions/api/node.ts"),
  consumers: join(ROOT, "functions/queue-consumers/local.ts"),
  agent: join(ROOT, "bridge-agent/main.ts"),
};
const TABLE = "usher";
const QUEUE_PREFIX = "usher-";
const REGION = "us-east-1";
const AWS_ENV = { AWS_ACCESS_KEY_ID: "local", AWS_SECRET_ACCESS_KEY: "local", AWS_REGION: REGION };

/** Writes each line as `<source> | <line>` on stdout: raw JSON after the bar, so grep works as usual. */
export const prefixedStdoutSink: LineSink = (source, line) => {
  process.stdout.write(`${source.padEnd(14)}| ${line}\n`);
};

/** Starts the whole stack; on any failure stops what it started and rethrows. */
export async function startStack(options: StackOptions): Promise<Stack> {
  if (options.sites.length === 0) throw new Error("startStack: at least one site is required");
  const entry: EntryPoints = { ...ENTRY, ...options.entryPoints };
  const missing = Object.values(entry).filter((file) => !existsSync(file));
  if (missing.length > 0) throw new Error(`startStack: entry points missing: ${missing.join(", ")}`);
  const sink = options.logSink ?? prefixedStdoutSink;
  const log = createLogger({ component: "local-stack" }, { sink: (line) => sink("stack", line) });
  const dataDir = resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true });

  // Children in shutdown order: control plane and agents first (tier 0), then their backing services.
  const tiers: Array<Array<{ name: string; pid: number; stop: () => Promise<void> }>> = [[], []];
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      for (const tier of tiers) await Promise.all(tier.map((c) => c.stop()));
      log.info("stack stopped");
    })();
    return stopping;
  };

  try {
    const siteNames = options.sites.map((s) => s.name);
    const [keys, dynamodb, sqs] = await allOrCleanup([
      loadOrCreateKeys(dataDir, siteNames),
      startDynamoDbLocal({
        port: options.dynamodbPort,
        path: options.persist ? join(dataDir, "dynamodb") : undefined,
        sink,
      }),
      startSqsEmulator({ port: options.sqsPort, sink }),
    ]);
    tiers[1]!.push({ name: "dynamodb", ...dynamodb }, { name: "sqs", ...sqs });
    log.info("dynamodb and sqs up", {
      dynamodb: dynamodb.endpoint,
      sqs: sqs.endpoint,
      pids: { dynamodb: dynamodb.pid, sqs: sqs.pid },
    });

    const resources = await ensureResources({
      dynamodbEndpoint: dynamodb.endpoint,
      sqsEndpoint: sqs.endpoint,
      table: TABLE,
      queuePrefix: QUEUE_PREFIX,
      sites: siteNames,
    });

    const env: Record<string, string> = {
      AWS_REGION: REGION,
      USHER_DYNAMODB_ENDPOINT: dynamodb.endpoint,
      USHER_TABLE: TABLE,
      USHER_SQS_ENDPOINT: sqs.endpoint,
      USHER_OPS_QUEUE_URL: resources.queueUrls.ops,
      USHER_RESULTS_QUEUE_URL: resources.queueUrls.results,
      USHER_AGENT_QUEUE_URL_TEMPLATE: resources.agentQueueUrlTemplate,
      USHER_DEFAULT_SITE: siteNames[0]!,
      USHER_JWT_ISSUER: TOKEN_ISSUER,
      USHER_JWT_AUDIENCE: TOKEN_AUDIENCE,
      USHER_JWT_ALGORITHMS: TOKEN_ALGORITHM,
      USHER_JWKS: JSON.stringify(userTokenJwks(keys)),
      USHER_SIGNING_KEY: JSON.stringify(keys.controlPlane.privateJwk),
      USHER_AGENT_KEYS: JSON.stringify(agentPublicKeys(keys)),
      USHER_LOG_LEVEL: options.logLevel ?? "info",
      ...(options.opTimeoutSeconds === undefined
        ? {}
        : { USHER_OP_TIMEOUT_SECONDS: String(options.opTimeoutSeconds) }),
      ...(options.siteConfig ? { USHER_CONFIG: options.siteConfig } : {}),
      ...options.extraEnv,
    };
    // Fail here, with every bad variable named, rather than in each child.
    parseControlPlaneEnv(env);

    const childEnv = (extra: Record<string, string> = {}) => ({
      ...process.env,
      ...env,
      ...AWS_ENV,
      ...extra,
    });
    const start = (name: string, entry: string, args: string[], extra?: Record<string, string>): Child => {
      const child = spawnChild({
        name,
        command: process.execPath,
        args: [entry, ...args],
        cwd: ROOT,
        env: childEnv(extra),
        sink,
      });
      tiers[0]!.push({ name, pid: child.pid, stop: () => child.stop() });
      log.info("started", { name, pid: child.pid });
      return child;
    };

    const apiPort = options.apiPort ?? (await freePort());
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    const api = start("api", entry.api, [], { PORT: String(apiPort), HOST: "127.0.0.1" });

    const sweep = String(options.sweepIntervalSeconds ?? 5);
    const consumers = [
      start("consumers", entry.consumers, [], {
        USHER_CONSUMERS: "results,sweep,notifier",
        USHER_SWEEP_INTERVAL_SECONDS: sweep,
      }),
    ];
    for (let i = 1; i <= (options.schedulerProcesses ?? 1); i++) {
      consumers.push(start(`scheduler-${i}`, entry.consumers, [], { USHER_CONSUMERS: "scheduler" }));
    }

    await waitUntil(
      `${apiUrl}/v1/health`,
      async () => (await fetch(`${apiUrl}/v1/health`, { signal: AbortSignal.timeout(2_000) })).ok,
      { child: api, timeoutMs: 60_000, intervalMs: 150 },
    );

    const mintToken = tokenMinter(keys);
    const adminToken = await mintToken({
      sub: "local-admin",
      project: "admin",
      roles: ["admin"],
      expiresIn: "12h",
    });
    for (const site of options.sites) {
      for (const host of site.hosts) await registerHost(apiUrl, adminToken, site.name, host, log.info);
    }

    // Agents after their hosts are registered, so their first inventory report is not dropped.
    const agents: Child[] = [];
    const agentBySite = new Map<string, { child: Child; configPath: string }>();
    for (const site of options.sites) {
      const configPath = await writeAgentConfig({
        dataDir,
        site: site.name,
        hosts: site.hosts,
        sqsEndpoint: sqs.endpoint,
        region: REGION,
        commandQueueUrl: resources.queueUrls.agents[site.name]!,
        resultsQueueUrl: resources.queueUrls.results,
        controlPlanePublicKey: keys.controlPlane.publicJwk,
        signingKey: keys.agents[site.name]!.privateJwk,
        delayScale: options.delayScale ?? 1,
        pollWaitSeconds: options.agentPollWaitSeconds ?? 20,
        inventoryIntervalSeconds: options.agentInventoryIntervalSeconds ?? 30,
        settings: options.agentSettings,
        logLevel: options.logLevel ?? "info",
      });
      const child = start(`agent-${site.name}`, entry.agent, ["--config", configPath]);
      agents.push(child);
      agentBySite.set(site.name, { child, configPath });
    }
    const agent = (site: string) => {
      const get = () => {
        const a = agentBySite.get(site);
        if (!a) throw new Error(`no agent for site ${site}`);
        return a;
      };
      return {
        pid: () => get().child.pid,
        async kill(signal: NodeJS.Signals = "SIGKILL") {
          const { child } = get();
          // The whole process group, as a crash of the machine's agent would take it.
          process.kill(-child.pid, signal);
          await child.exited;
        },
        async restart() {
          const a = get();
          if (a.child.running()) throw new Error(`agent of ${site} is still running`);
          const child = start(`agent-${site}`, entry.agent, ["--config", a.configPath]);
          agentBySite.set(site, { ...a, child });
          await waitForAgent(child, log.warn);
        },
      };
    };

    await Promise.all(agents.map((agent) => waitForAgent(agent, log.warn)));

    // A consumer or agent that died on start-up would otherwise only show as operations that hang.
    for (const child of [...consumers, ...agents]) {
      if (!child.running()) {
        const info = await child.exited;
        throw new Error(
          `${child.name} exited during start-up (code ${info.code}):\n${child.tail().join("\n")}`,
        );
      }
    }

    const pids: Record<string, number> = {};
    for (const tier of tiers) for (const c of tier) pids[c.name] = c.pid;
    log.info("stack up", { apiUrl, pids });
    return {
      apiUrl,
      env,
      ports: { api: apiPort, dynamodb: dynamodb.port, sqs: sqs.port },
      dataDir,
      resources,
      keys,
      mintToken,
      adminToken,
      userToken: (project, sub) => mintToken({ sub: sub ?? `user-${project}`, project, roles: ["user"] }),
      pids,
      stop,
      agent,
    };
  } catch (error) {
    log.error("stack failed to start; stopping what started", { error });
    await stop();
    throw error;
  }
}
