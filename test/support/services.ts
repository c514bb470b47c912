/**
 * Real DynamoDB Local + fauxqs with Usher's table and queues, and service `Deps` over them, for tests
 * that drive the control plane's services directly (with a controllable clock).
 */
import { ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { startDynamoDbLocal } from "../../infra/local/dynamodb.ts";
import { ensureResources, type Resources } from "../../infra/local/resources.ts";
import { startSqsEmulator } from "../../infra/local/sqs.ts";
import type { Principal } from "../../shared/auth/principal.ts";
import { silentLogger } from "../../shared/log.ts";
import type { UsherConfig } from "../../shared/plugins/config.ts";
import { Plugins } from "../../shared/plugins/host.ts";
import { QueueClient } from "../../shared/queue/sqs.ts";
import { DEFAULT_SERVICE_CONFIG, type Deps } from "../../shared/services/context.ts";
import { generateEd25519Jwks, importEd25519, type SigningKey } from "../../shared/signing/keys.ts";
import { createDb } from "../../shared/store/client.ts";

const credentials = { accessKeyId: "local", secretAccessKey: "local" };

export type ServiceBed = {
  resources: Resources;
  /** Deps with a clock the test moves (`clock.offsetMs`). */
  deps(overrides?: {
    opsQueueUrl?: string;
    hostDownAfterSeconds?: number;
    driftPolicy?: "adopt" | "error";
    /** The site's plugin config (none when absent). */
    config?: UsherConfig;
  }): Deps;
  /** Signs reports as the agent of any of the bed's sites. */
  agentSigner: SigningKey;
  clock: { offsetMs: number };
  /** Receives what is waiting on a queue (short poll, deletes nothing). */
  receive(queueUrl: string): Promise<string[]>;
  stop(): Promise<void>;
};

export const admin: Principal = { subject: "root", project: "ops", roles: ["admin"] };

export async function startServiceBed(sites = ["local"]): Promise<ServiceBed> {
  const [ddb, sqs] = await Promise.all([startDynamoDbLocal(), startSqsEmulator()]);
  const resources = await ensureResources({
    dynamodbEndpoint: ddb.endpoint,
    sqsEndpoint: sqs.endpoint,
    table: "usher",
    queuePrefix: "usher-",
    sites,
  });
  const signer = await importEd25519((await generateEd25519Jwks("cp")).privateJwk);
  const agentPair = await generateEd25519Jwks("agent");
  const agentSigner = await importEd25519(agentPair.privateJwk);
  const agentPublic = (await importEd25519(agentPair.publicJwk)).key;
  const clock = { offsetMs: 0 };
  const db = createDb({ table: resources.table, region: "us-east-1", endpoint: ddb.endpoint, credentials });
  const queues = (opsQueueUrl: string) =>
    new QueueClient({
      region: "us-east-1",
      endpoint: sqs.endpoint,
      opsQueueUrl,
      agentQueueUrlTemplate: resources.agentQueueUrlTemplate,
      credentials,
    });
  const probe = queues(resources.queueUrls.ops);
  return {
    resources,
    clock,
    agentSigner,
    deps: (o = {}) => ({
      db,
      queues: queues(o.opsQueueUrl ?? resources.queueUrls.ops),
      signer,
      agentKey: (site) => (sites.includes(site) ? agentPublic : undefined),
      log: silentLogger,
      now: () => new Date(Date.now() + clock.offsetMs),
      plugins: new Plugins(o.config),
      config: {
        ...DEFAULT_SERVICE_CONFIG,
        defaultSite: sites[0] ?? "local",
        opTimeoutSeconds: 120,
        idempotencyTtlSeconds: 3600,
        // Tests that move the clock far ahead do not want their hosts marked down unless they ask.
        hostDownAfterSeconds: o.hostDownAfterSeconds ?? 86_400,
        driftPolicy: o.driftPolicy ?? "error",
      },
    }),
    async receive(queueUrl) {
      const out = await probe.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 1,
          VisibilityTimeout: 0,
        }),
      );
      return (out.Messages ?? []).map((m) => m.Body ?? "");
    },
    async stop() {
      await Promise.all([ddb.stop(), sqs.stop()]);
    },
  };
}
