/**
 * The proxy keys of a test proxy's trail, written as the CLI writes them: signed with the trail's
 * signing key (`<log-db>.signing-key` unless the test gave another), so the proxy honours them.
 */
import { SqliteProxyKeys } from "../../src/store/sqlite/keys.ts";
import { loadSigningKey, signingKeyPath } from "../../src/trail/signing.ts";

export function signedKeyTable(logDb: string, signingKey?: string): SqliteProxyKeys {
  return new SqliteProxyKeys(logDb, { key: loadSigningKey(signingKeyPath(logDb, signingKey), { create: false }) });
}
