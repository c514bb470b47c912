/** Token verification against a JWKS served over HTTP (createRemoteJWKSet), on a loopback server. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTokenVerifier } from "./tokens.ts";

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
