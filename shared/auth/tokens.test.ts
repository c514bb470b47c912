/**
 * Token verification against a JWKS served over HTTP (createRemoteJWKSet), on a loopback server; and
 * the verifier's cache of verified tokens, against a local JWKS.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createTokenVerifier, type TokenVerifierOptions } from "./tokens.ts";

let server: Server;
let url: string;
let privateKey: CryptoKey;
let fetches = 0;

beforeAll(async () => {
  const pair = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  privateKey = pair.privateKey;
  const jwks = JSON.stringify({
    keys: [{ ...(await exportJWK(pair.publicKey)), kid: "remote-1", alg: "EdDSA" }],
  });
  server = createServer((_req, res) => {
    fetches++;
    res.writeHead(200, { "content-type": "application/json" }).end(jwks);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const sign = (claims: Record<string, unknown>) =>
  new SignJWT(claims)
    .setProtectedHeader({ alg: "EdDSA", kid: "remote-1" })
    .setSubject("bob")
    .setIssuer("iss")
    .setAudience("aud")
    .setExpirationTime("5m")
    .sign(privateKey);

describe("remote JWKS", () => {
  it("verifies tokens with keys fetched from the JWKS URL, fetching once for many tokens", async () => {
    const verify = createTokenVerifier({
      issuer: "iss",
      audience: "aud",
      algorithms: ["EdDSA"],
      jwksUrl: url,
    });
    for (let i = 0; i < 5; i++) {
      expect(await verify(await sign({ project: "p9", roles: ["operator"] }))).toEqual({
        subject: "bob",
        project: "p9",
        roles: ["operator"],
      });
    }
    expect(fetches).toBe(1);
  });

  it("refuses an algorithm outside the allow-list even with a valid key", async () => {
    const verify = createTokenVerifier({
      issuer: "iss",
      audience: "aud",
      algorithms: ["ES256"],
      jwksUrl: url,
    });
    await expect(verify(await sign({ project: "p9" }))).rejects.toThrow(
      /algorithm not allowed|no matching key/,
    );
  });

  it("refuses unknown roles", async () => {
    const verify = createTokenVerifier({
      issuer: "iss",
      audience: "aud",
      algorithms: ["EdDSA"],
      jwksUrl: url,
    });
    await expect(verify(await sign({ project: "p9", roles: ["root"] }))).rejects.toMatchObject({
      code: "unauthenticated",
    });
  });

  it("will not be built with HMAC or none", () => {
    expect(() =>
      createTokenVerifier({ issuer: "i", audience: "a", algorithms: ["HS256"], jwksUrl: url }),
    ).toThrow();
    expect(() =>
      createTokenVerifier({ issuer: "i", audience: "a", algorithms: ["none"], jwksUrl: url }),
    ).toThrow();
  });
});

describe("verified-token cache", () => {
  let key: CryptoKey;
  let otherKey: CryptoKey;
  let local: TokenVerifierOptions;

  beforeAll(async () => {
    const pair = await generateKeyPair("ES256", { extractable: true });
    key = pair.privateKey;
    otherKey = (await generateKeyPair("ES256")).privateKey;
    const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: "local-1", alg: "ES256" };
    local = { issuer: "iss", audience: "aud", algorithms: ["ES256"], jwks: { keys: [jwk] } };
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  /** A token for `sub`, expiring at `exp` (epoch seconds; five minutes from now by default). */
  const token = (sub: string, opts: { exp?: number; nbf?: number; signer?: CryptoKey } = {}) => {
    const jwt = new SignJWT({ project: "p1", roles: ["user"] })
      .setProtectedHeader({ alg: "ES256", kid: "local-1" })
      .setSubject(sub)
      .setIssuer("iss")
      .setAudience("aud")
      .setExpirationTime(opts.exp ?? Math.floor(Date.now() / 1000) + 300);
    if (opts.nbf !== undefined) jwt.setNotBefore(opts.nbf);
    return jwt.sign(opts.signer ?? key);
  };
  /** Counts signature checks: a cache hit makes none. */
  const signatureChecks = () => vi.spyOn(crypto.subtle, "verify");

  it("checks a token's signature once, then answers from the cache with an equal, separate principal", async () => {
    const verify = createTokenVerifier(local);
    const checks = signatureChecks();
    const t = await token("ann");
    const first = await verify(t);
    (first.roles as string[]).push("admin");
    expect(await verify(t)).toEqual({ subject: "ann", project: "p1", roles: ["user"] });
    expect(checks).toHaveBeenCalledTimes(1);
    await verify(await token("bea"));
    expect(checks).toHaveBeenCalledTimes(2);
  });

  it("never answers a token from the cache at or past its exp", async () => {
    const verify = createTokenVerifier(local);
    const exp = Math.floor(Date.now() / 1000) + 60;
    const t = await token("ann", { exp });
    await verify(t);
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(exp * 1000 - 1);
    await expect(verify(t)).resolves.toMatchObject({ subject: "ann" });
    vi.setSystemTime(exp * 1000);
    await expect(verify(t)).rejects.toMatchObject({ code: "unauthenticated", message: /expired/ });
  });

  it("keeps an entry no longer than maxAgeMs", async () => {
    const verify = createTokenVerifier({ ...local, cache: { entries: 8, maxAgeMs: 1_000 } });
    const t = await token("ann");
    await verify(t);
    const checks = signatureChecks();
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.now() + 999);
    await verify(t);
    expect(checks).toHaveBeenCalledTimes(0);
    vi.setSystemTime(Date.now() + 2);
    await verify(t);
    expect(checks).toHaveBeenCalledTimes(1);
  });

  it("holds at most `entries` tokens, dropping the least recently used", async () => {
    const verify = createTokenVerifier({ ...local, cache: { entries: 2, maxAgeMs: 60_000 } });
    const [a, b, c] = await Promise.all([token("a"), token("b"), token("c")]);
    const checks = signatureChecks();
    await verify(a);
    await verify(b);
    await verify(a); // a is now the most recently used
    await verify(c); // evicts b
    expect(checks).toHaveBeenCalledTimes(3);
    await verify(a);
    await verify(c);
    expect(checks).toHaveBeenCalledTimes(3);
    await verify(b);
    expect(checks).toHaveBeenCalledTimes(4);
  });

  it("never remembers a failure", async () => {
    const verify = createTokenVerifier(local);
    const forged = await token("ann", { signer: otherKey });
    const checks = signatureChecks();
    await expect(verify(forged)).rejects.toMatchObject({ message: /bad signature/ });
    await expect(verify(forged)).rejects.toMatchObject({ message: /bad signature/ });
    expect(checks).toHaveBeenCalledTimes(2);

    // Refused while not yet valid, accepted once it is: the refusal was not kept.
    const nbf = Math.floor(Date.now() / 1000) + 30;
    const early = await token("bea", { nbf });
    await expect(verify(early)).rejects.toMatchObject({ code: "unauthenticated" });
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(nbf * 1000);
    await expect(verify(early)).resolves.toMatchObject({ subject: "bea" });
  });

  it("checks every call when the cache is off, and refuses a cache that holds nothing", async () => {
    const verify = createTokenVerifier({ ...local, cache: false });
    const t = await token("ann");
    const checks = signatureChecks();
    await verify(t);
    await verify(t);
    expect(checks).toHaveBeenCalledTimes(2);
    expect(() => createTokenVerifier({ ...local, cache: { entries: 0, maxAgeMs: 1_000 } })).toThrow();
  });
});
