/**
 * The local stand-ins the end-to-end sections run on: DynamoDB Local and fauxqs (each its own child,
 * on loopback), Usher's table and queues, keys, and the control-plane environment, with in-process
 * `Deps` over them and consumer processes on demand. Everything it starts, `stop()` ends by pid.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { BatchWriteCommand } from "@aws-sdk/lib-dynamodb";
import { type Child, type LineSink, spawnChild } from "../../infra/local/child.ts";
import { startDynamoDbLocal } from "../../infra/local/dynamodb.ts";
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
} from "../../infra/local/keys.ts";
import { ensureResources, type Resources } from "../../infra/local/resources.ts";
import { startSqsEmulator } from "../../infra/local/sqs.ts";
import { parseControlPlaneEnv } from "../../shared/config/control-plane.ts";
import type { CreateHost } from "../../shared/contracts/host.ts";
import { createLogger } from "../../shared/log.ts";
import type { UsherConfig } from "../../shared/plugins/config.ts";
import { type ControlPlane, createControlPlane } from "../../shared/services/control-plane.ts";
import { newHost } from "../../shared/services/hosts.ts";
import { keys as storeKeys } from "../../shared/store/keys.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const CONSUMERS = join(ROOT, "functions/queue-consumers/local.ts");
const AWS_ENV = { AWS_ACCESS_KEY_ID: "local", AWS_SECRET_ACCESS_KEY: "local", AWS_REGION: "us-east-1" };

export type BenchBed = {
  resources: Resources;
  keys: LocalKeys;
  /** The control-plane environment (ControlPlaneEnv variables) for in-process deps and children. */
  env: Record<string, string>;
  mintToken: MintToken;
  dataDir: string;
  /** A control plane in this process over the bed (`extraEnv` overrides the bed's variables). */
  controlPlane(opts?: { extraEnv?: Record<string, string>; config?: UsherConfig }): Promise<ControlPlane>;
  /** Registers `n` hosts in `site` in batches of 25 (ids `<site>-<n>`); `spec(i)` gives each one's capacity. */
  seedHosts(site: string, n: number, spec: (i: number) => Omit<CreateHost, "id" | "site">): Promise<string[]>;
  /** A consumer process (functions/queue-consumers/local.ts) running `consumers`; its lines go to `sink`. */
  consumer(name: string, consumers: string, sink: LineSink, extraEnv?: Record<string, string>): Child;
  stop(): Promise<void>;
};

/** Starts DynamoDB Local and fauxqs, makes the table and the queues of `sites`. */
export async function startBenchBed(sites: string[]): Promise<BenchBed> {
  const dataDir = await mkdtemp(join(tmpdir(), "usher-bench-"));
  const quiet: LineSink = () => {};
  const [dynamodb, sqs] = await Promise.all([
    startDynamoDbLocal({ sink: quiet }),
    startSqsEmulator({ sink: quiet }),
  ]);
  const children: Child[] = [];
  const stop = async () => {
    await Promise.all(children.map((c) => c.stop()));
    await Promise.all([dynamodb.stop(), sqs.stop()]);
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    const keys = await loadOrCreateKeys(dataDir, sites);
    const resources = await ensureResources({
      dynamodbEndpoint: dynamodb.endpoint,
      sqsEndpoint: sqs.endpoint,
      table: "usher",
      queuePrefix: "usher-",
      sites,
    });
    const env: Record<string, string> = {
      ...AWS_ENV,
      USHER_DYNAMODB_ENDPOINT: dynamodb.endpoint,
      USHER_TABLE: resources.table,
      USHER_SQS_ENDPOINT: sqs.endpoint,
      USHER_OPS_QUEUE_URL: resources.queueUrls.ops,
      USHER_RESULTS_QUEUE_URL: resources.queueUrls.results,
      USHER_AGENT_QUEUE_URL_TEMPLATE: resources.agentQueueUrlTemplate,
      USHER_DEFAULT_SITE: sites[0]!,
      USHER_JWT_ISSUER: TOKEN_ISSUER,
      USHER_JWT_AUDIENCE: TOKEN_AUDIENCE,
      USHER_JWT_ALGORITHMS: TOKEN_ALGORITHM,
      USHER_JWKS: JSON.stringify(userTokenJwks(keys)),
      USHER_SIGNING_KEY: JSON.stringify(keys.controlPlane.privateJwk),
      USHER_AGENT_KEYS: JSON.stringify(agentPublicKeys(keys)),
      USHER_LOG_LEVEL: "warn",
    };
    const controlPlane: BenchBed["controlPlane"] = async (opts = {}) =>
      createControlPlane(parseControlPlaneEnv({ ...env, ...opts.extraEnv }), {
        component: "bench",
        log: createLogger({ component: "bench" }, { level: "error", sink: () => {} }),
        ...(opts.config ? { config: opts.config } : {}),
      });
    const { deps } = await controlPlane();
    return {
      resources,
      keys,
      env,
      mintToken: tokenMinter(keys),
      dataDir,
      controlPlane,
      async seedHosts(site, n, spec) {
        const ids: string[] = [];
        const items = Array.from({ length: n }, (_, i) => {
          const id = `${site}-${String(i).padStart(String(n - 1).length, "0")}`;
          ids.push(id);
          const host = newHost(deps, { id, site, ...spec(i) });
          return { ...host, ...storeKeys.host(id), ...storeKeys.hostIndex(site, id) };
        });
        const batches: (typeof items)[] = [];
        for (let i = 0; i < items.length; i += 25) batches.push(items.slice(i, i + 25));
        // A few batches at once; DynamoDB Local answers unprocessed items only under real throttling.
        for (let i = 0; i < batches.length; i += 8) {
          await Promise.all(
            batches.slice(i, i + 8).map((batch) =>
              deps.db.doc.send(
                new BatchWriteCommand({
                  RequestItems: { [resources.table]: batch.map((Item) => ({ PutRequest: { Item } })) },
                }),
              ),
            ),
          );
        }
        return ids;
      },
      consumer(name, consumers, sink, extraEnv = {}) {
        const child = spawnChild({
          name,
          command: process.execPath,
          args: [CONSUMERS],
          cwd: ROOT,
          env: { ...process.env, ...env, USHER_CONSUMERS: consumers, USHER_LOG_LEVEL: "info", ...extraEnv },
          sink,
        });
        children.push(child);
        return child;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
