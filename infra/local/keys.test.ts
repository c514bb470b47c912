import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import {
  agentPublicKeys,
  loadOrCreateKeys,
  TOKEN_AUDIENCE,
  TOKEN_ISSUER,
  tokenMinter,
  userTokenJwks,
} from "./keys.ts";

describe("local keys", () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("creates keys once, keeps them across loads and adds new sites", async () => {
    dir = await mkdtemp(join(tmpdir(), "usher-keys-"));
    const first = await loadOrCreateKeys(dir, ["a"]);
    expect((await stat(join(dir, "keys.json"))).mode & 0o777).toBe(0o600);
    expect(first.controlPlane.privateJwk).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA" });
    const again = await loadOrCreateKeys(dir, ["a", "b"]);
    expect(again.controlPlane).toEqual(first.controlPlane);
    expect(again.userTokens).toEqual(first.userTokens);
    expect(again.agents.a).toEqual(first.agents.a);
    expect(Object.keys(agentPublicKeys(again)).sort()).toEqual(["a", "b"]);
    expect(agentPublicKeys(again).b).not.toHaveProperty("d");
    expect(userTokenJwks(again).keys[0]).not.toHaveProperty("d");
  });

  it("mints ES256 tokens the JWKS verifies, with the API's issuer, audience and claims", async () => {
    dir = await mkdtemp(join(tmpdir(), "usher-keys-"));
    const keys = await loadOrCreateKeys(dir, []);
    const token = await tokenMinter(keys)({ sub: "alice", project: "p1", roles: ["user"], expiresIn: 60 });
    expect(decodeProtectedHeader(token)).toMatchObject({ alg: "ES256", kid: keys.userTokens.publicJwk.kid });
    const { payload } = await jwtVerify(token, createLocalJWKSet(userTokenJwks(keys)), {
      issuer: TOKEN_ISSUER,
      audience: TOKEN_AUDIENCE,
    });
    expect(payload).toMatchObject({ sub: "alice", project: "p1", roles: ["user"] });
    expect(payload.exp! - Math.floor(Date.now() / 1000)).toBeGreaterThan(50);
    await expect(tokenMinter(keys)({ sub: "x", project: "p", roles: ["root" as never] })).rejects.toThrow();
  });
});
