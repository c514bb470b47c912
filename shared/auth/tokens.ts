/**
 * User tokens: JWTs verified with jose against a JWKS (remote, cached by jose, or local), with an
 * algorithm allow-list, required issuer, audience and `exp`. Claims give subject, project and roles.
 * A verifier remembers the tokens it has verified (a bounded LRU, never past a token's `exp`), so a
 * client's next requests with the same token skip the signature check.
 */
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
  errors as joseErrors,
  jwtVerify,
} from "jose";
import { z } from "zod";
import { Role } from "../contracts/common.ts";
import { AuthError, ErrorCode } from "../errors.ts";
import type { Principal } from "./principal.ts";

export type TokenVerifierOptions = {
  issuer: string;
  audience: string;
  algorithms: string[];
  jwksUrl?: string | undefined;
  jwks?: JSONWebKeySet | undefined;
  /**
   * Verified tokens to remember: at most `entries`, each for at most `maxAgeMs` and never past its
   * `exp`; `false` verifies every call. By default 1,024 tokens for up to 10 minutes (the remote
   * JWKS cache's own age, so a key dropped from the JWKS stops working about as soon as it would
   * without this cache).
   */
  cache?: { entries: number; maxAgeMs: number } | false | undefined;
};

const DEFAULT_CACHE = { entries: 1024, maxAgeMs: 600_000 };

const Claims = z.object({
  sub: z.string().min(1),
  project: z.string().min(1).max(128),
  roles: z.array(Role).default(["user"]),
});

export type TokenVerifier = (token: string) => Promise<Principal>;

export function createTokenVerifier(opts: TokenVerifierOptions): TokenVerifier {
  if (!opts.issuer || !opts.audience) throw new Error("token verifier needs an issuer and an audience");
  if (opts.algorithms.length === 0 || opts.algorithms.some((a) => a === "none" || a.startsWith("HS"))) {
    throw new Error("token verifier needs asymmetric algorithms only");
  }
  let keys: JWTVerifyGetKey;
  if (opts.jwksUrl)
    keys = createRemoteJWKSet(new URL(opts.jwksUrl), { cooldownDuration: 30_000, cacheMaxAge: 600_000 });
  else if (opts.jwks) keys = createLocalJWKSet(opts.jwks);
  else throw new Error("token verifier needs a JWKS URL or a local JWKS");

  const cache = opts.cache === false ? undefined : new VerifiedTokens(opts.cache ?? DEFAULT_CACHE);

  return async (token) => {
    const known = cache?.get(token);
    if (known) return known;
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        algorithms: opts.algorithms,
        issuer: opts.issuer,
        audience: opts.audience,
        requiredClaims: ["exp", "sub"],
      }));
    } catch (cause) {
      throw new AuthError(ErrorCode.unauthenticated, `invalid token: ${reason(cause)}`, { cause });
    }
    const claims = Claims.safeParse(payload);
    if (!claims.success)
      throw new AuthError(
        ErrorCode.unauthenticated,
        "invalid token: missing or malformed project/roles claims",
      );
    const principal = { subject: claims.data.sub, project: claims.data.project, roles: claims.data.roles };
    // `exp` is required above, so a verified token always has it.
    cache?.set(token, principal, (payload.exp as number) * 1000);
    return principal;
  };
}

/**
 * Tokens that passed verification, by their exact text (signature included, so a token altered in
 * any way misses), with the principal they gave. Only successes are stored: a token that failed is
 * checked again on every call. An entry is dropped once its token expires (jose refuses a token
 * from its `exp` second on; so does this) or after `maxAgeMs`, whichever comes first, and the least
 * recently used goes when the cache is full.
 * Out of scope: revocation. A token (or a key) revoked before its `exp` is still accepted from the
 * cache until the entry ends, at most `maxAgeMs`; without the cache, a revoked token is accepted
 * until its `exp` anyway, as nothing here checks revocation.
 */
class VerifiedTokens {
  private readonly entries = new Map<string, { principal: Principal; untilMs: number }>();
  private readonly max: number;
  private readonly maxAgeMs: number;

  constructor(opts: { entries: number; maxAgeMs: number }) {
    if (!(opts.entries >= 1) || !(opts.maxAgeMs > 0))
      throw new Error("token cache needs at least one entry and a positive maxAgeMs");
    this.max = Math.floor(opts.entries);
    this.maxAgeMs = opts.maxAgeMs;
  }

  get(token: string): Principal | undefined {
    const hit = this.entries.get(token);
    if (!hit) return undefined;
    this.entries.delete(token);
    if (Date.now() >= hit.untilMs) return undefined;
    // Re-inserted: a Map iterates in insertion order, so the first key is the least recently used.
    this.entries.set(token, hit);
    // A copy, so a caller changing its principal cannot change the next request's.
    return { ...hit.principal, roles: [...hit.principal.roles] };
  }

  set(token: string, principal: Principal, expMs: number): void {
    const untilMs = Math.min(expMs, Date.now() + this.maxAgeMs);
    if (!(untilMs > Date.now())) return;
    this.entries.delete(token);
    if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(token, { principal: { ...principal, roles: [...principal.roles] }, untilMs });
  }
}

function reason(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return "expired";
  if (err instanceof joseErrors.JWTClaimValidationFailed)
    return `claim "${err.claim}" ${err.reason === "missing" ? "missing" : "rejected"}`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return "algorithm not allowed";
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return "bad signature";
  if (err instanceof joseErrors.JWKSNoMatchingKey) return "no matching key";
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) return "malformed";
  return "not verifiable";
}
