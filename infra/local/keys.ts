/**
 * Keys of the local stack, kept in `<dataDir>/keys.json` so a restart keeps tokens and agents valid:
 * - the control plane's Ed25519 key that signs agent commands,
 * - one Ed25519 key per site that its agent signs reports with,
 * - an ES256 key that signs dev user tokens (its public half is the API's JWKS).
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from "jose";
import { z } from "zod";
import { type Role, Role as RoleSchema } from "../../shared/contracts/common.ts";
import { generateEd25519Jwks } from "../../shared/signing/keys.ts";

/** Issuer and audience of dev tokens (the stack sets the API's USHER_JWT_ISSUER/AUDIENCE to these). */
export const TOKEN_ISSUER = "usher-local";
export const TOKEN_AUDIENCE = "usher";
export const TOKEN_ALGORITHM = "ES256";

const Jwk = z.looseObject({ kty: z.string(), kid: z.string() });
const KeyPair = z.object({ privateJwk: Jwk, publicJwk: Jwk });
const KeysFile = z.object({
  version: z.literal(1),
  controlPlane: KeyPair,
  agents: z.record(z.string(), KeyPair),
  userTokens: KeyPair,
});

export type KeyPair = { privateJwk: JWK; publicJwk: JWK };
export type LocalKeys = {
  controlPlane: KeyPair;
  /** Agent key pair by site. */
  agents: Record<string, KeyPair>;
  userTokens: KeyPair;
};

/**
 * Loads `<dataDir>/keys.json`, adding a key for any site that has none, or creates it. Written with
 * mode 0600: these are private keys, if only dev ones.
 */
export async function loadOrCreateKeys(dataDir: string, sites: string[]): Promise<LocalKeys> {
  const file = join(dataDir, "keys.json");
  let keys: LocalKeys | undefined;
  let changed = false;
  try {
    const { version: _, ...stored } = KeysFile.parse(JSON.parse(await readFile(file, "utf8")));
    keys = stored as LocalKeys;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT")
      throw new Error(`cannot read ${file}`, { cause: error });
  }
  if (!keys) {
    keys = {
      controlPlane: await generateEd25519Jwks(`control-plane-${stamp()}`),
      agents: {},
      userTokens: await generateEs256Jwks(`user-tokens-${stamp()}`),
    };
    changed = true;
  }
  for (const site of sites) {
    if (keys.agents[site]) continue;
    keys.agents[site] = await generateEd25519Jwks(`agent-${site}-${stamp()}`);
    changed = true;
  }
  if (changed) {
    await mkdir(dataDir, { recursive: true });
    // Write then rename, so an interrupted start never leaves half a file.
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify({ version: 1, ...keys }, null, 2)}\n`, { mode: 0o600 });
    await rename(tmp, file);
  }
  return keys;
}

/** A short time stamp for key ids, so a regenerated key never shares a `kid` with an old one. */
const stamp = () => Date.now().toString(36);

async function generateEs256Jwks(kid: string): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(TOKEN_ALGORITHM, { extractable: true });
  const common = { kid, alg: TOKEN_ALGORITHM, use: "sig" };
  return {
    privateJwk: { ...(await exportJWK(privateKey)), ...common },
    publicJwk: { ...(await exportJWK(publicKey)), ...common },
  };
}

/** The JWKS that verifies dev user tokens (USHER_JWKS). */
export function userTokenJwks(keys: LocalKeys): { keys: JWK[] } {
  return { keys: [keys.userTokens.publicJwk] };
}

/** Agents' public keys by site (USHER_AGENT_KEYS). */
export function agentPublicKeys(keys: LocalKeys): Record<string, JWK> {
  return Object.fromEntries(Object.entries(keys.agents).map(([site, pair]) => [site, pair.publicJwk]));
}

export const MintTokenInput = z.object({
  sub: z.string().min(1),
  project: z.string().min(1),
  roles: z.array(RoleSchema).min(1),
  /** Seconds from now, or a jose time span such as `"2h"` or `"30d"`. One hour when absent. */
  expiresIn: z.union([z.number().int(), z.string().min(2)]).optional(),
});
export type MintTokenInput = { sub: string; project: string; roles: Role[]; expiresIn?: number | string };
export type MintToken = (input: MintTokenInput) => Promise<string>;

/** Signs dev user tokens: issuer `usher-local`, audience `usher`, claims `sub`, `project`, `roles`, `exp`. */
export function tokenMinter(keys: LocalKeys): MintToken {
  let key: Promise<CryptoKey> | undefined;
  const kid = keys.userTokens.privateJwk.kid;
  return async (input) => {
    const claims = MintTokenInput.parse(input);
    key ??= importJWK(keys.userTokens.privateJwk, TOKEN_ALGORITHM) as Promise<CryptoKey>;
    const expiresIn = claims.expiresIn ?? "1h";
    return (
      new SignJWT({ project: claims.project, roles: claims.roles })
        .setProtectedHeader({ alg: TOKEN_ALGORITHM, typ: "JWT", ...(kid ? { kid } : {}) })
        .setSubject(claims.sub)
        .setIssuer(TOKEN_ISSUER)
        .setAudience(TOKEN_AUDIENCE)
        .setIssuedAt()
        // jose reads a number as an absolute epoch time; ours is relative.
        .setExpirationTime(
          typeof expiresIn === "number" ? Math.floor(Date.now() / 1000) + expiresIn : expiresIn,
        )
        .sign(await key)
    );
  };
}
