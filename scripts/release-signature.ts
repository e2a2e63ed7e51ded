/**
 * The release's detached signatures of SHA256SUMS, made with one Ed25519 key in two standard forms,
 * so a user checks a download with a tool their system already has (docs/operators.md, "Verifying a download"):
 *
 *   SHA256SUMS.sig     the raw 64-byte signature:   openssl pkeyutl -verify -rawin (OpenSSL 3)
 *   SHA256SUMS.sshsig  an SSH signature (SSHSIG):  ssh-keygen -Y verify (OpenSSH 8.1+, also on
 *                      macOS and Windows 10+)
 *
 * with the public half beside them as agent-attr-release.pem (SPKI PEM, for openssl) and
 * agent-attr-release.allowed_signers (for ssh-keygen). The private key never enters the repository
 * or the release folder: `bun run release` reads it from a file the caller names.
 */
import { createHash, createPrivateKey, createPublicKey, sign, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";

export const signatureFiles = {
  raw: "SHA256SUMS.sig",
  ssh: "SHA256SUMS.sshsig",
  publicPem: "agent-attr-release.pem",
  allowedSigners: "agent-attr-release.allowed_signers",
} as const;

/** The identity ssh-keygen's `-I` names, and the SSHSIG namespace ssh-keygen uses for files. */
export const sshIdentity = "agent-attr-release";
export const sshNamespace = "file";

/** An Ed25519 private key in PEM (PKCS#8, as `openssl genpkey -algorithm ed25519` writes it). */
export function loadReleaseKey(path: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(path, "utf8"));
  } catch (error) {
    throw new Error(`cannot read the release signing key ${path}: ${(error as Error).message}`);
  }
  if (key.asymmetricKeyType !== "ed25519") {
    throw new Error(
      `the release signing key ${path} is ${key.asymmetricKeyType ?? "not an asymmetric key"}, not Ed25519 (make one: openssl genpkey -algorithm ed25519 -out release.key)`,
    );
  }
  return key;
}

/** The 32 raw bytes of an Ed25519 public key. */
function rawPublicKey(key: KeyObject): Buffer {
  const { x } = createPublicKey(key).export({ format: "jwk" });
  return Buffer.from(x!, "base64url");
}

/** SSH wire `string`: a uint32 length, then the bytes. */
function sshString(value: string | Buffer): Buffer {
  const bytes = typeof value === "string" ? Buffer.from(value) : value;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

const sshKeyBlob = (key: KeyObject) => Buffer.concat([sshString("ssh-ed25519"), sshString(rawPublicKey(key))]);

/** The signature in OpenSSH's SSHSIG format (PROTOCOL.sshsig), armored as `ssh-keygen -Y sign` writes it. */
function sshSignature(key: KeyObject, message: Buffer): string {
  const magic = Buffer.from("SSHSIG");
  const hash = "sha512";
  const signed = Buffer.concat([
    magic,
    sshString(sshNamespace),
    sshString(""),
    sshString(hash),
    sshString(createHash(hash).update(message).digest()),
  ]);
  const signature = Buffer.concat([sshString("ssh-ed25519"), sshString(sign(null, signed, key))]);
  const version = Buffer.alloc(4);
  version.writeUInt32BE(1);
  const blob = Buffer.concat([
    magic,
    version,
    sshString(sshKeyBlob(key)),
    sshString(sshNamespace),
    sshString(""),
    sshString(hash),
    sshString(signature),
  ]);
  const lines = blob.toString("base64").match(/.{1,70}/g)!;
  return `-----BEGIN SSH SIGNATURE-----\n${lines.join("\n")}\n-----END SSH SIGNATURE-----\n`;
}

/** Every file the signing adds to the release folder, by name. */
export function signReleaseFiles(key: KeyObject, sums: Buffer): Record<string, string | Buffer> {
  const publicKey = createPublicKey(key);
  return {
    [signatureFiles.raw]: sign(null, sums, key),
    [signatureFiles.ssh]: sshSignature(key, sums),
    [signatureFiles.publicPem]: publicKey.export({ type: "spki", format: "pem" }).toString(),
    [signatureFiles.allowedSigners]: `${sshIdentity} namespaces="${sshNamespace}" ssh-ed25519 ${sshKeyBlob(key).toString("base64")}\n`,
  };
}

/**
 * The key's fingerprints, to compare with the ones the project publishes: `ssh` as ssh-keygen
 * prints it on a good signature ("with ED25519 key SHA256:…"), `spki` as
 * `openssl pkey -pubin -in agent-attr-release.pem -outform DER | sha256sum` prints it.
 */
export function keyFingerprints(key: KeyObject): { ssh: string; spki: string } {
  const spki = createPublicKey(key).export({ type: "spki", format: "der" });
  return {
    ssh: `SHA256:${createHash("sha256").update(sshKeyBlob(key)).digest("base64").replace(/=+$/, "")}`,
    spki: createHash("sha256").update(spki).digest("hex"),
  };
}
