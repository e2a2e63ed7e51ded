/**
 * The storage drivers, for tests that must hold for both: each opens a fresh trail and can change
 * its tables behind the store's back (as someone with database access would).
 */
import { join } from "node:path";
import type { AuditStore } from "../../src/store/contract.ts";
import { PgAuditStore } from "../../src/store/postgres/store.ts";
import { SqliteAuditStore } from "../../src/store/sqlite/store.ts";
import { pgContext, type PgSchema } from "./postgres.ts";
import { tempDir } from "./proxy.ts";
import { tamper } from "./records.ts";

/** What these tests use of a store, in the contract's terms. */
export type TestStore = Pick<AuditStore, "begin" | "commit" | "flush" | "reader" | "trail" | "consents" | "keys" | "close">;

export interface OpenedTrail {
  store: TestStore;
  /** Runs SQL against the trail's tables directly. */
  tamper(sql: string): Promise<void>;
}

export interface TestDriver {
  name: "sqlite" | "postgres";
  open(label: string): Promise<OpenedTrail>;
}

const checkpoint = { everyRecords: 10, everySeconds: 3600 };

export const sqliteDriver: TestDriver = {
  name: "sqlite",
  async open() {
    const dir = tempDir();
    const logDb = join(dir, "audit.db");
    const store = new SqliteAuditStore(logDb, { checkpoint, signingKey: join(dir, "signing-key") });
    return {
      store: {
        begin: (record) => store.begin(record),
        commit: (record) => store.commit(record),
        flush: () => store.flush(),
        reader: store.reader,
        trail: store.trail,
        consents: store.consents,
        keys: store.keys,
        close: () => store.close(),
      },
      tamper: async (sql) => tamper(logDb, sql),
    };
  },
};

/** PostgreSQL, each trail in its own schema derived from the test file's (dropped with it). */
export function postgresDriver(pg: () => PgSchema, keyDir = tempDir()): TestDriver {
  return {
    name: "postgres",
    async open(label) {
      const schema = `${pg().schema}_${label}`;
      const store = await PgAuditStore.open(pgContext(pg().logDb.replace(/schema=.*$/, `schema=${schema}`), keyDir));
      return {
        store,
        tamper: async (sql) => {
          await pg().sql.begin(async (tx) => {
            await tx.unsafe(`SET LOCAL search_path TO "${schema}"`);
            await tx.unsafe(sql);
          });
        },
      };
    },
  };
}
