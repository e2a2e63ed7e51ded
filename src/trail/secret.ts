/**
 * The instance secret that keys prompt and response hashes (HMAC-SHA256). Taken from
 * AGENT_ATTR_HASH_KEY if set; otherwise generated once and kept beside the database in
 * `<log-db>.key` (mode 0600). Losing it does not break the trail, but new hashes will no longer
 * match old ones.
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";

export function loadHashKey(logDb: string): Uint8Array {
  const fromEnv = process.env.AGENT_ATTR_HASH_KEY;
  if (fromEnv) return new TextEncoder().encode(fromEnv);
  if (logDb === ":memory:") return crypto.getRandomValues(new Uint8Array(32));
  const file = `${logDb}.key`;
  if (existsSync(file)) return Buffer.from(readFileSync(file, "utf8").trim(), "hex");
  const key = crypto.getRandomValues(new Uint8Array(32));
  writeFileSync(file, `${Buffer.from(key).toString("hex")}\n`, { mode: 0o600, flag: "wx" });
  chmodSync(file, 0o600);
  return key;
}
