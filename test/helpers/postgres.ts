/**
 * A private schema on the local PostgreSQL (127.0.0.1:5432, database `test`) per test file: a
 * unique name, dropped afterwards, so parallel test files and other users of `test` never meet.
 */
import { SQL } from "bun";
import { join } from "node:path";
import type { StoreContext } from "../../src/store/contract.ts";
import type { Logger } from "../../src/log.ts";
import { tempDir } from "./proxy.ts";

export const pgServer = process.env.AGENT_ATTR_TEST_PG ?? "postgres://postgres@127.0.0.1:5432/test";

export interface PgSchema {
  schema: string;
  logDb: string;
  /** A direct connection, as someone with database access would use (tamper, inspect). */
  sql: SQL;
  drop(): Promise<void>;
}

export async function pgSchema(label: string): Promise<PgSchema> {
  const schema = `aa_${label}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`.toLowerCase();
  const sql = new SQL(pgServer, { max: 2, connection: { search_path: schema } });
  return {
    schema,
    logDb: `${pgServer}?schema=${schema}`,
    sql,
    /** Drops the schema and any `<schema>_*` schema a test derived from it. */
    async drop() {
      const own = (await sql`SELECT nspname FROM pg_namespace WHERE nspname = ${schema} OR starts_with(nspname, ${`${schema}_`})`) as {
        nspname: string;
      }[];
      for (const { nspname } of own) await sql.unsafe(`DROP SCHEMA IF EXISTS "${nspname}" CASCADE`);
      await sql.close();
    },
  };
}

export interface CapturedLog extends Logger {
  lines: string[];
}
export function capturedLog(): CapturedLog {
  const lines: string[] = [];
  return { lines, info: (m) => lines.push(`info: ${m}`), warn: (m) => lines.push(`warn: ${m}`), error: (m) => lines.push(`error: ${m}`) };
}

/** A store context on that schema, with a signing key file of its own (shared by the replicas of one test). */
export function pgContext(logDb: string, keyDir = tempDir(), log: Logger = capturedLog()): StoreContext {
  return {
    logDb,
    log,
    audit: { checkpoint: { everyRecords: 10, everySeconds: 3600 }, signingKey: join(keyDir, "signing-key"), maxBacklog: 1000 },
  };
}
