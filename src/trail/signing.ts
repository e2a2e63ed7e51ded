/**
 * The Ed25519 key that signs checkpoints and export manifests. Generated on first start and kept
 * beside the database in `<log-db>.signing-key` (PKCS#8 PEM, mode 0600) unless `audit.signingKey`
 * names another file. Anyone holding the public key (`agent-attr audit pubkey`) can check a
 * checkpoint or an export without access to the database.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { errorMessage } from "../errors.ts";

export function signingKeyPath(logDb: string, configured?: string): string {
  return configured ?? `${logDb}.signing-key`;
}

/** Loads the private key, generating it first if `create` and the file does not exist. */
export function loadSigningKey(path: string, options: { create: boolean }): KeyObject | null {
  if (!existsSync(path)) {
    if (!options.create) return null;
    const { privateKey } = generateKeyPairSync("ed25519");
    try {
      writeFileSync(path, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600, flag: "wx" });
      chmodSync(path, 0o600);
    } catch (error) {
      // Another process created it first: use theirs.
      if ((error as { code?: string }).code !== "EEXIST") throw error;
    }
  }
  try {
    return createPrivateKey(readFileSync(path, "utf8"));
  } catch (error) {
    throw new Error(`the signing key ${path} is unreadable (${errorMessage(error)}); restore it from a backup`);
  }
}

/** The public half as SPKI PEM (what `audit pubkey` prints and manifests carry). */
export function publicKeyPem(key: KeyObject): string {
  return publicOf(key).export({ type: "spki", format: "pem" }).toString();
}

const publicOf = (key: KeyObject): KeyObject => (key.type === "public" ? key : createPublicKey(key));

export function parsePublicKey(pem: string): KeyObject {
  try {
    return createPublicKey(pem);
  } catch {
    throw new Error("not an Ed25519 public key in PEM form (the output of 'agent-attr audit pubkey')");
  }
}

/** Raw Ed25519 signature bytes (what `openssl pkeyutl -verify -rawin -sigfile` checks); throws without a key. */
export function signWith(key: KeyObject | null, data: Uint8Array): Uint8Array {
  if (!key) throw new Error("this trail's signing key is not available here; pass --signing-key FILE (or set audit.signingKey)");
  return new Uint8Array(sign(null, data, key));
}

export function signBytes(key: KeyObject, data: string): string {
  return sign(null, Buffer.from(data), key).toString("base64");
}

export function verifyBytes(key: KeyObject, data: string, signature: string): boolean {
  try {
    return verify(null, Buffer.from(data), key, Buffer.from(signature, "base64"));
  } catch {
    return false;
  }
}
