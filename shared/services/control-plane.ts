/** The composition root: builds the services' dependencies from parsed configuration. */
import type { JSONWebKeySet, JWK } from "jose";
import { createTokenVerifier, type TokenVerifier } from "../auth/tokens.ts";
import type { ControlPlaneEnv } from "../config/control-plane.ts";
import { createLogger, type Logger } from "../log.ts";
import type { UsherConfig } from "../plugins/config.ts";
import { Plugins } from "../plugins/host.ts";
import { QueueClient } from "../queue/sqs.ts";
import { importEd25519 } from "../signing/keys.ts";
import { createDb } from "../store/client.ts";
import { DEFAULT_SERVICE_CONFIG, type Deps } from "./context.ts";
import { HostCache } from "./host-cache.ts";

export type ControlPlane = { deps: Deps; verifyToken: TokenVerifier };

export async function createControlPlane(
  env: ControlPlaneEnv,
  opts: { component: string; log?: Logger; config?: UsherConfig } = { component: "control-plane" },
): Promise<ControlPlane> {
  const log = opts.log ?? createLogger({ component: opts.component }, { level: env.USHER_LOG_LEVEL });
  const signer = await importEd25519(env.USHER_SIGNING_KEY as JWK);
  const agentKeys = new Map<string, CryptoKey>();
  for (const [site, jwk] of Object.entries(env.USHER_AGENT_KEYS))
    agentKeys.set(site, (await importEd25519(jwk as JWK)).key);
  const credentials =
    env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
      ? { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY }
      : undefined;
  const deps: Deps = {
    db: createDb({
      table: env.USHER_TABLE,
      region: env.AWS_REGION,
      endpoint: env.USHER_DYNAMODB_ENDPOINT,
      credentials,
    }),
    queues: new QueueClient({
      region: env.AWS_REGION,
      endpoint: env.USHER_SQS_ENDPOINT,
      opsQueueUrl: env.USHER_OPS_QUEUE_URL,
      agentQueueUrlTemplate: env.USHER_AGENT_QUEUE_URL_TEMPLATE,
      credentials,
    }),
    signer,
    agentKey: (site) => agentKeys.get(site),
    log,
    now: () => new Date(),
    plugins: new Plugins(opts.config),
    ...(env.USHER_HOST_CACHE_MS > 0 ? { hostCache: new HostCache(env.USHER_HOST_CACHE_MS) } : {}),
    config: {
      ...DEFAULT_SERVICE_CONFIG,
      defaultSite: env.USHER_DEFAULT_SITE,
      opTimeoutSeconds: env.USHER_OP_TIMEOUT_SECONDS,
      idempotencyTtlSeconds: env.USHER_IDEMPOTENCY_TTL_SECONDS,
      driftPolicy: env.USHER_DRIFT_POLICY,
      hostDownAfterSeconds: env.USHER_HOST_DOWN_AFTER_SECONDS,
      evacuateConfirm: env.USHER_EVACUATE_CONFIRM,
      fenceTimeoutSeconds: env.USHER_FENCE_TIMEOUT_SECONDS,
    },
  };
  const verifyToken = createTokenVerifier({
    issuer: env.USHER_JWT_ISSUER,
    audience: env.USHER_JWT_AUDIENCE,
    algorithms: env.USHER_JWT_ALGORITHMS,
    jwksUrl: env.USHER_JWKS_URL,
    jwks: env.USHER_JWKS as JSONWebKeySet | undefined,
  });
  return { deps, verifyToken };
}
