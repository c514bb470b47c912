/**
 * Configuration of the control plane (API, queue consumers, sweep), from environment variables.
 * Parsed once in each entry point's main(), never at import.
 */
import { z } from "zod";

const json = <T extends z.ZodType>(schema: T) =>
  z
    .string()
    .transform((s, ctx) => {
      try {
        return JSON.parse(s) as unknown;
      } catch {
        ctx.addIssue({ code: "custom", message: "not valid JSON" });
        return z.NEVER;
      }
    })
    .pipe(schema);

const Jwk = z.looseObject({ kty: z.string() });

export const ControlPlaneEnv = z.object({
  /** AWS region of DynamoDB and SQS. */
  AWS_REGION: z.string().default("us-east-1"),
  /** AWS credentials, where the runtime gives none of its own (Workers, local emulators). */
  AWS_ACCESS_KEY_ID: z.string().min(1).optional(),
  AWS_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  /** DynamoDB endpoint override (DynamoDB Local); AWS's own when absent. */
  USHER_DYNAMODB_ENDPOINT: z.url().optional(),
  /** The state table. */
  USHER_TABLE: z.string().min(3).default("usher"),
  /** SQS endpoint override (fauxqs); AWS's own when absent. */
  USHER_SQS_ENDPOINT: z.url().optional(),
  /** URL of the `ops` queue. */
  USHER_OPS_QUEUE_URL: z.url(),
  /** URL of the `results` queue. */
  USHER_RESULTS_QUEUE_URL: z.url(),
  /** Agent command queue URL with `{site}` in place of the site name. */
  USHER_AGENT_QUEUE_URL_TEMPLATE: z.string().includes("{site}"),
  /** Site used when a request names none. */
  USHER_DEFAULT_SITE: z.string().default("local"),
  /** JWT issuer the API requires. */
  USHER_JWT_ISSUER: z.string().min(1),
  /** JWT audience the API requires. */
  USHER_JWT_AUDIENCE: z.string().min(1),
  /** Algorithms the API accepts, comma separated. `none` and HMAC are never accepted. */
  USHER_JWT_ALGORITHMS: z
    .string()
    .default("RS256,ES256,EdDSA")
    .transform((s) =>
      s
        .split(",")
        .map((a) => a.trim())
        .filter(Boolean),
    )
    .pipe(
      z
        .array(
          z.enum(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]),
        )
        .min(1),
    ),
  /** Where to fetch the JWKS that signs user tokens. One of this or USHER_JWKS is required. */
  USHER_JWKS_URL: z.url().optional(),
  /** A local JWKS (JSON) for user tokens. */
  USHER_JWKS: json(z.object({ keys: z.array(Jwk).min(1) })).optional(),
  /** The control plane's Ed25519 private JWK (JSON) that signs agent commands. */
  USHER_SIGNING_KEY: json(Jwk),
  /** Agents' Ed25519 public JWKs by site (JSON object `{site: jwk}`) that verify their reports. */
  USHER_AGENT_KEYS: json(z.record(z.string(), Jwk)),
  /** How long an operation may take from submission before the sweep fails it. */
  USHER_OP_TIMEOUT_SECONDS: z.coerce.number().int().min(5).max(86_400).default(600),
  /** How long an Idempotency-Key is remembered. */
  USHER_IDEMPOTENCY_TTL_SECONDS: z.coerce.number().int().min(60).default(86_400),
  /** Reconciliation policy for VMs whose host disagrees with the record: `adopt` the host's truth, or mark them `error`. */
  USHER_DRIFT_POLICY: z.enum(["adopt", "error"]).default("error"),
  /**
   * How long a scheduling process places VMs from its last read of a site's hosts before reading them
   * again (0: read every time). Stale is safe: claims are conditional, and "nothing fits" is only said
   * after a fresh read (shared/services/host-cache.ts).
   */
  USHER_HOST_CACHE_MS: z.coerce.number().int().min(0).max(60_000).default(2_000),
  /** Seconds without a reachable report after which a host is marked `down`. */
  USHER_HOST_DOWN_AFTER_SECONDS: z.coerce.number().int().min(10).default(120),
  /**
   * What confirms that a down host is fenced before its VMs restart elsewhere: `agent` (the agent's
   * report that the fence action succeeded) or `agent+admin` (that report, then an admin's
   * `POST /v1/hosts/{id}/evacuate/confirm`).
   */
  USHER_EVACUATE_CONFIRM: z.enum(["agent", "agent+admin"]).default("agent+admin"),
  /** How long a site's agent has to fence a host and report; after it the evacuation fails. */
  USHER_FENCE_TIMEOUT_SECONDS: z.coerce.number().int().min(10).max(3_600).default(300),
  /** Log level. */
  USHER_LOG_LEVEL: z.enum(["debug", "info", "warn", "error"]).default("info"),
});
export type ControlPlaneEnv = z.infer<typeof ControlPlaneEnv>;

/** Parses the environment; throws one readable error naming every bad variable. */
export function parseControlPlaneEnv(env: Record<string, unknown>): ControlPlaneEnv {
  const parsed = ControlPlaneEnv.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".") || "(env)"}: ${i.message}`);
    throw new Error(`invalid control-plane configuration:\n${lines.join("\n")}`);
  }
  if (!parsed.data.USHER_JWKS_URL && !parsed.data.USHER_JWKS) {
    throw new Error("invalid control-plane configuration:\n  USHER_JWKS_URL or USHER_JWKS is required");
  }
  return parsed.data;
}
