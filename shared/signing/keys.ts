import { exportJWK, generateKeyPair, importJWK, type JWK } from "jose";

export type SigningKey = { key: CryptoKey; kid: string };

/** A new Ed25519 key pair as JWKs (used by the local stack and tests; production keys come from config). */
export async function generateEd25519Jwks(kid: string): Promise<{ privateJwk: JWK; publicJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: "EdDSA" };
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: "EdDSA" };
  return { privateJwk, publicJwk };
}

/** Imports an Ed25519 JWK for EdDSA signing or verification. */
export async function importEd25519(jwk: JWK): Promise<SigningKey> {
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519") throw new Error("expected an Ed25519 (OKP) JWK");
  const key = (await importJWK({ ...jwk, alg: "EdDSA" }, "EdDSA")) as CryptoKey;
  return { key, kid: jwk.kid ?? "default" };
}
