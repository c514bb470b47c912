/**
 * User tokens: JWTs verified with jose against a JWKS (remote, cached by jose, or local), with an
 * algorithm allow-list, required issuer, audience and `exp`. Claims give subject, project and roles.
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
};

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

  return async (token) => {
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
    return { subject: claims.data.sub, project: claims.data.project, roles: claims.data.roles };
  };
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
