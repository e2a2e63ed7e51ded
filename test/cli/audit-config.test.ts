// The audit CLI uses the config's audit settings like the proxy does (audit.logDb,
// audit.signingKey, audit.checkpoint.file), never creates a missing signing key, tells an
// unverifiable checkpoint from tampering, and seals the events it appends with a checkpoint.
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { signingKeyPath } from "../../src/trail/signing.ts";
import { runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";
import { sampleRecord, tamper, trailWith } from "../helpers/records.ts";
import { SqliteAuditStore } from "../../src/store/sqlite/store.ts";

/** A trail whose key lives where only the config says, and a config naming both. */
async function configured() {
  const logDb = await trailWith(5);
  const dir = tempDir();
  const key = join(dir, "instance.key");
  renameSync(signingKeyPath(logDb), key);
  const checkpoints = join(dir, "checkpoints.ndjson");
  const config = join(dir, "agent-attr.config.ts");
  writeFileSync(
    config,
    `export default { audit: { logDb: ${JSON.stringify(logDb)}, signingKey: ${JSON.stringify(key)}, checkpoint: { file: ${JSON.stringify(checkpoints)} } } };\n`,
  );
  return { logDb, key, checkpoints, config, dir };
}

test("verify, pubkey and delete read audit.logDb and audit.signingKey from the config (AGENT_ATTR_CONFIG or ./agent-attr.config.ts)", async () => {
  const { logDb, config, dir } = await configured();
  const verify = await runCli(["audit", "verify", "--config", config]);
  expect(verify.stdout).toContain("intact");
  expect(verify.exitCode).toBe(0);
  // Found as ./agent-attr.config.ts in the working directory, like `proxy start` does.
  const pubkey = await runCli(["audit", "pubkey"], { cwd: dir });
  expect(pubkey.stdout).toContain("BEGIN PUBLIC KEY");
  expect(existsSync(signingKeyPath(logDb))).toBe(false);
});

test("a missing key is never created by pubkey or verify: pubkey fails with what to do, verify exits 6 (checkpoints unverifiable)", async () => {
  const { logDb } = await configured(); // the config is not used here: the key is not beside the database
  const pubkey = await runCli(["audit", "pubkey", "--log-db", logDb]);
  expect(pubkey.exitCode).toBe(4);
  expect(pubkey.stderr).toContain("No signing key at");
  expect(pubkey.stderr).toContain("audit.signingKey");
  expect(existsSync(signingKeyPath(logDb))).toBe(false);
  const verify = await runCli(["audit", "verify", "--log-db", logDb, "--format", "json"]);
  expect(verify.exitCode).toBe(6);
  expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true, failure: null, unverified_checkpoints: 1, checkpoints: 0 });
  expect(existsSync(signingKeyPath(logDb))).toBe(false);
  const tampered = await runCli(["audit", "verify", "--log-db", logDb]);
  expect(tampered.stdout).not.toContain("TAMPERED");
});

test("verify checks the configured checkpoint file by default: deleting checkpoints from the database and truncating is caught", async () => {
  const { logDb, config, checkpoints } = await configured();
  // The CLI's own actions seal with a checkpoint that goes to the configured file too.
  expect((await runCli(["audit", "query", "--config", config])).exitCode).toBe(0);
  expect(existsSync(checkpoints)).toBe(true);
  tamper(logDb, "DELETE FROM audit_checkpoints", "DELETE FROM audit_events");
  const verify = await runCli(["audit", "verify", "--config", config, "--format", "json"]);
  expect(verify.exitCode).toBe(1);
  expect(JSON.parse(verify.stdout).failure).toMatchObject({ seq: 6, reason: "truncated" });
});

test("events the CLI appends last (erasure, query, verify, export) are sealed by a signed checkpoint: deleting them is caught", async () => {
  const { logDb, config, dir } = await configured();
  const lastCheckpoint = () => {
    const db = new Database(logDb, { readonly: true });
    try {
      return db.query<{ seq: number }, []>("SELECT max(seq) AS seq FROM audit_checkpoints").get()!.seq;
    } finally {
      db.close();
    }
  };
  await runCli(["audit", "delete", "--user", "user-2", "--config", config]);
  expect(lastCheckpoint()).toBe(6);
  await runCli(["audit", "query", "--config", config]);
  expect(lastCheckpoint()).toBe(7);
  await runCli(["audit", "export", "--format", "csv", "--output", join(dir, "x.csv"), "--config", config]);
  expect(lastCheckpoint()).toBe(8);
  tamper(logDb, "DELETE FROM audit_events WHERE seq = 8");
  const verify = await runCli(["audit", "verify", "--config", config, "--format", "json"]);
  expect(verify.exitCode).toBe(1);
  expect(JSON.parse(verify.stdout).failure).toMatchObject({ seq: 8, reason: "truncated" });
});

test("the CLI works on the store the config's plugin provides (sqliteAudit({ path })), as the proxy does — and keys it creates there are chain events", async () => {
  const dir = tempDir();
  writeFileSync(
    join(dir, "agent-attr.config.ts"),
    `import { defineConfig } from "agent-attr";\nimport { sqliteAudit } from "agent-attr/plugins";\nexport default defineConfig({ plugins: [sqliteAudit({ path: "./kept/trail.db" })] });\n`,
  );
  mkdirSync(join(dir, "kept"));
  const trail = join(dir, "kept/trail.db");
  const store = new SqliteAuditStore(trail);
  store.commit(sampleRecord(1, { agent_id: "plugin-store-agent" }));
  await store.close();

  const query = await runCli(["audit", "query", "--format", "json"], { cwd: dir });
  expect(query.exitCode).toBe(0);
  expect((JSON.parse(query.stdout) as { records: { agent_id: string }[] }).records.map((r) => r.agent_id)).toEqual(["plugin-store-agent"]);
  const created = await runCli(["keys", "create", "--agent", "plugin-store-agent", "--format", "json"], { cwd: dir });
  expect(created.exitCode).toBe(0);
  const { id } = JSON.parse(created.stdout) as { id: string };
  expect((await runCli(["keys", "revoke", id], { cwd: dir })).exitCode).toBe(0);
  expect(existsSync(join(dir, "audit.db"))).toBe(false);
  const verify = await runCli(["audit", "verify"], { cwd: dir });
  expect(verify.exitCode).toBe(0);
  const db = new Database(trail, { readonly: true });
  const events = db.query<{ kind: string; details: string }, []>("SELECT kind, details FROM audit_events ORDER BY seq").all();
  db.close();
  expect(events.map((event) => event.kind)).toEqual(["query", "key_created", "key_revoked", "verify"]);
  expect(JSON.parse(events[1]!.details)).toMatchObject({ key_id: id, agents: ["plugin-store-agent"] });
  expect(events[1]!.details).not.toContain((JSON.parse(created.stdout) as { key: string }).key);
});
