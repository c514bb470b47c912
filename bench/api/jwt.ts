/**
 * What `verifyToken` (shared/auth/tokens.ts, the API's verifier) costs per call, each call timed alone:
 * - cold: a verifier just made (JWKS copied, the key imported on its first use) and a token it has
 *   never seen, as the first request of a fresh Lambda or Worker isolate pays;
 * - warm: a verifier that has verified before, and a token it has never seen (every call checks the
 *   ES256 signature and the claims);
 * - repeated: that verifier and one token it has already verified, as a client's next requests are
 *   (answered from the verifier's cache of verified tokens).
 */
import type { MintToken } from "../../infra/local/keys.ts";
import { createTokenVerifier, type TokenVerifierOptions } from "../../shared/auth/tokens.ts";
import { quantile } from "../lib/stats.ts";

export type CallTimes = { p50Us: number; p99Us: number };
export type JwtCost = { cold: CallTimes; warm: CallTimes; repeated: CallTimes };

function times(us: number[]): CallTimes {
  us.sort((a, b) => a - b);
  return { p50Us: quantile(us, 0.5), p99Us: quantile(us, 0.99) };
}

/** Tokens for distinct subjects of the bench project, signed before any timing. */
export async function mintTokens(mint: MintToken, n: number, tag: string): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await mint({ sub: `${tag}-${i}`, project: "bench", roles: ["user"] }));
  return out;
}

/** One run: `cold.length` cold calls, then `warm.length` warm ones, then as many repeated ones. */
export async function jwtCost(
  opts: TokenVerifierOptions,
  tokens: { cold: string[]; warm: string[] },
): Promise<JwtCost> {
  const cold: number[] = [];
  for (const token of tokens.cold) {
    const t0 = performance.now();
    await createTokenVerifier(opts)(token);
    cold.push((performance.now() - t0) * 1000);
  }
  const verify = createTokenVerifier(opts);
  const seen = tokens.cold[0]!;
  await verify(seen);
  const warm: number[] = [];
  for (const token of tokens.warm) {
    const t0 = performance.now();
    await verify(token);
    warm.push((performance.now() - t0) * 1000);
  }
  const repeated: number[] = [];
  for (let i = 0; i < tokens.warm.length; i++) {
    const t0 = performance.now();
    await verify(seen);
    repeated.push((performance.now() - t0) * 1000);
  }
  return { cold: times(cold), warm: times(warm), repeated: times(repeated) };
}
