// The audit CLI uses the config's audit settings like the proxy does (audit.logDb,
// audit.signingKey, audit.checkpoint.file), never creates a missing signing key, tells an
// unverifiable checkpoint from tampering, and seals the events it appends with a checkpoint — on
// both drivers.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, renameSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { signingKeyPath } from "../../src/trail/signing.ts";
import { postgresDriver, sqliteDriver, trailOn, type OpenedTrail, type TestDriver } from "../helpers/drivers.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";
import { sampleRecord } from "../helpers/records.ts";

let pg: PgSchema;
beforeAll(async () => {
  pg = await pgSchema("cli_config");
});
afterAll(async () => {
  await pg.drop();
});

/** Where the CLI would look for the signing key given none (SQLite: beside the database; PostgreSQL: ./agent-attr.signing-key). */
const defaultKey = (trail: OpenedTrail, cwd: string) =>
  trail.logDb.startsWith("postgres://") ? join(cwd, "agent-attr.signing-key") : signingKeyPath(trail.logDb);

describe.each([sqliteDriver, postgresDriver(() => pg)])("the audit CLI's config on $name", (driver: TestDriver) => {
  /** A trail whose key lives where only the config says, and a config naming both. */
  async function configured() {
    const trail = await trailOn(driver, "configured", 5);
    const dir = tempDir();
    const key = join(dir, "instance.key");
    renameSync(trail.signingKey, key);
    const checkpoints = join(dir, "checkpoints.ndjson");
    const config = join(dir, "agent-attr.config.ts");
    writeFileSync(
      config,
      `export default { audit: { logDb: ${JSON.stringify(trail.logDb)}, signingKey: ${JSON.stringify(key)}, checkpoint: { file: ${JSON.stringify(checkpoints)} } } };\n`,
    );
    return { trail, key, checkpoints, config, dir };
  }

  test("verify, pubkey and delete read audit.logDb and audit.signingKey from the config (AGENT_ATTR_CONFIG or ./agent-attr.config.ts)", async () => {
    const { trail, config, dir } = await configured();
    const verify = await runCli(["audit", "verify", "--config", config], { cwd: dir });
    expect(verify.stdout).toContain("intact");
    expect(verify.exitCode).toBe(0);
    // Found as ./agent-attr.config.ts in the working directory, like `proxy start` does.
    const pubkey = await runCli(["audit", "pubkey"], { cwd: dir });
    expect(pubkey.stdout).toContain("BEGIN PUBLIC KEY");
    expect(existsSync(defaultKey(trail, dir))).toBe(false);
  });

  test("a missing key is never created by pubkey or verify: pubkey fails with what to do, verify exits 6 (checkpoints unverifiable)", async () => {
    const { trail } = await configured(); // the config is not used here: the key is not where the driver looks by default
    const cwd = tempDir();
    const pubkey = await runCli(["audit", "pubkey", "--log-db", trail.logDb], { cwd });
    expect(pubkey.exitCode).toBe(4);
    expect(pubkey.stderr).toContain("No signing key at");
    expect(pubkey.stderr).toContain("audit.signingKey");
    expect(existsSync(defaultKey(trail, cwd))).toBe(false);
    const verify = await runCli(["audit", "verify", "--log-db", trail.logDb, "--format", "json"], { cwd });
    expect(verify.exitCode).toBe(6);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true, failure: null, unverified_checkpoints: 1, checkpoints: 0 });
    expect(existsSync(defaultKey(trail, cwd))).toBe(false);
    const tampered = await runCli(["audit", "verify", "--log-db", trail.logDb], { cwd });
    expect(tampered.stdout).not.toContain("TAMPERED");
  });

  test("verify checks the configured checkpoint file by default: deleting checkpoints from the database and truncating is caught", async () => {
    const { trail, config, checkpoints } = await configured();
    // The CLI's own actions seal with a checkpoint that goes to the configured file too.
    expect((await runCli(["audit", "query", "--config", config])).exitCode).toBe(0);
    expect(existsSync(checkpoints)).toBe(true);
    await trail.tamper("DELETE FROM audit_checkpoints");
    await trail.tamper("DELETE FROM audit_events");
    const verify = await runCli(["audit", "verify", "--config", config, "--format", "json"]);
    expect(verify.exitCode).toBe(1);
    expect(JSON.parse(verify.stdout).failure).toMatchObject({ seq: 6, reason: "truncated" });
  });

  test("events the CLI appends last (erasure, query, verify, export) are sealed by a signed checkpoint: deleting them is caught", async () => {
    const { trail, config, dir } = await configured();
    const lastCheckpoint = async () =>
      Number((await trail.query<{ seq: number | string }>("SELECT max(seq) AS seq FROM audit_checkpoints"))[0]!.seq);
    await runCli(["audit", "delete", "--user", "user-2", "--config", config]);
    expect(await lastCheckpoint()).toBe(6);
    await runCli(["audit", "query", "--config", config]);
    expect(await lastCheckpoint()).toBe(7);
    await runCli(["audit", "export", "--format", "csv", "--output", join(dir, "x.csv"), "--config", config]);
    expect(await lastCheckpoint()).toBe(8);
    await trail.tamper("DELETE FROM audit_events WHERE seq = 8");
    const verify = await runCli(["audit", "verify", "--config", config, "--format", "json"]);
    expect(verify.exitCode).toBe(1);
    expect(JSON.parse(verify.stdout).failure).toMatchObject({ seq: 8, reason: "truncated" });
  });

  test("the CLI works on the store the config's plugin provides (sqliteAudit({ path }), postgresAudit({ url })), as the proxy does — and keys it creates there are chain events", async () => {
    const dir = tempDir();
    const sqlite = driver.name === "sqlite";
    const trail = await driver.open("plugin_store");
    await trail.store.close();
    // SQLite: a path relative to the working directory, as a config in a checkout would name it.
    const plugin = sqlite
      ? `sqliteAudit({ path: ${JSON.stringify(relative(dir, trail.logDb))} })`
      : `postgresAudit({ url: ${JSON.stringify(trail.logDb)} })`;
    writeFileSync(
      join(dir, "agent-attr.config.ts"),
      `import { defineConfig } from "agent-attr";\nimport { ${sqlite ? "sqliteAudit" : "postgresAudit"} } from "agent-attr/plugins";\nexport default defineConfig({ audit: { signingKey: ${JSON.stringify(trail.signingKey)} }, plugins: [${plugin}] });\n`,
    );
    const store = await trail.reopen();
    await store.commit(sampleRecord(1, { agent_id: "plugin-store-agent" }));
    await store.close();

    const query = await runCli(["audit", "query", "--format", "json"], { cwd: dir });
    expect(query.exitCode).toBe(0);
    expect((JSON.parse(query.stdout) as { records: { agent_id: string }[] }).records.map((r) => r.agent_id)).toEqual([
      "plugin-store-agent",
    ]);
    const created = await runCli(["keys", "create", "--agent", "plugin-store-agent", "--format", "json"], { cwd: dir });
    expect(created.exitCode).toBe(0);
    const { id } = JSON.parse(created.stdout) as { id: string };
    expect((await runCli(["keys", "revoke", id], { cwd: dir })).exitCode).toBe(0);
    expect(existsSync(join(dir, "audit.db"))).toBe(false);
    const verify = await runCli(["audit", "verify"], { cwd: dir });
    expect(verify.exitCode).toBe(0);
    const events = await trail.query<{ kind: string; details: string }>("SELECT kind, details FROM audit_events ORDER BY seq");
    expect(events.map((event) => event.kind)).toEqual(["query", "key_created", "key_revoked", "verify"]);
    expect(JSON.parse(events[1]!.details)).toMatchObject({ key_id: id, agents: ["plugin-store-agent"] });
    expect(events[1]!.details).not.toContain((JSON.parse(created.stdout) as { key: string }).key);
  });
});
