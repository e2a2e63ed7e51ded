/**
 * Verification keys for JWTs, imported once at setup with WebCrypto: an HS256 secret, an RS256 or
 * ES256 public key (PEM, `BEGIN PUBLIC KEY`), or a JWKS file (`{ "keys": [...] }`, chosen by `kid`).
 * Each key is bound to one algorithm, so a token cannot pick how it is checked (no alg confusion).
 */
import type { webcrypto } from "node:crypto";
import { readFileSync } from "node:fs";

export type Algorithm = "HS256" | "RS256" | "ES256";

export interface VerificationKey {
  alg: Algorithm;
  kid: string | null;
  key: CryptoKey;
}

type ImportParams = Parameters<typeof crypto.subtle.importKey>[2];
type VerifyParams = Parameters<typeof crypto.subtle.verify>[0];
type JWK = { kty?: string; crv?: string; alg?: string; use?: string; kid?: string; key_ops?: string[] } & Record<string, unknown>;

const params: Record<Algorithm, { import: ImportParams; verify: VerifyParams }> = {
  HS256: { import: { name: "HMAC", hash: "SHA-256" }, verify: { name: "HMAC" } },
  RS256: { import: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, verify: { name: "RSASSA-PKCS1-v1_5" } },
  ES256: { import: { name: "ECDSA", namedCurve: "P-256" }, verify: { name: "ECDSA", hash: "SHA-256" } },
};

export function verifyParams(alg: Algorithm): VerifyParams {
  return params[alg].verify;
}

export async function secretKey(secret: string): Promise<VerificationKey> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), params.HS256.import, false, ["verify"]);
  return { alg: "HS256", kid: null, key };
}

export async function pemKey(file: string, alg: "RS256" | "ES256"): Promise<VerificationKey> {
  const pem = readFileSync(file, "utf8");
  const match = /-----BEGIN PUBLIC KEY-----([\s\S]+?)-----END PUBLIC KEY-----/.exec(pem);
  if (!match) {
    throw new Error(`${file} holds no 'BEGIN PUBLIC KEY' block; export the public key as SPKI PEM (openssl pkey -pubout).`);
  }
  const der = Buffer.from(match[1]!.replace(/\s+/g, ""), "base64");
  try {
    const key = await crypto.subtle.importKey("spki", der, params[alg].import, false, ["verify"]);
    return { alg, kid: null, key };
  } catch (error) {
    throw new Error(`${file} is not a valid ${alg} public key (${error instanceof Error ? error.message : String(error)}).`);
  }
}

export async function jwksKeys(file: string): Promise<VerificationKey[]> {
  let parsed: { keys?: unknown };
  try {
    parsed = JSON.parse(readFileSync(file, "utf8")) as { keys?: unknown };
  } catch (error) {
    throw new Error(`${file} is not a JWKS JSON file (${error instanceof Error ? error.message : String(error)}).`);
  }
  if (!Array.isArray(parsed.keys)) throw new Error(`${file} has no "keys" array.`);
  const keys: VerificationKey[] = [];
  for (const jwk of parsed.keys as JWK[]) {
    const alg = jwk.kty === "RSA" ? "RS256" : jwk.kty === "EC" && jwk.crv === "P-256" ? "ES256" : null;
    if (!alg || (jwk.alg && jwk.alg !== alg) || (jwk.use && jwk.use !== "sig")) continue;
    const { kid, key_ops: _ops, ...material } = jwk;
    const key = await crypto.subtle.importKey("jwk", material as webcrypto.JsonWebKey, params[alg].import, false, ["verify"]);
    keys.push({ alg, kid: kid ?? null, key });
  }
  if (keys.length === 0) throw new Error(`${file} has no RS256 or ES256 (P-256) signing key.`);
  return keys;
}
