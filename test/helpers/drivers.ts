/**
 * The storage drivers, for tests that must hold for both: each opens a fresh trail and can change
 * its tables behind the store's back (as someone with database access would), open the same trail
 * again (another process, or a replica), and hand the CLI the `--log-db` and signing key to reach it.
 */
import { SQL } from "bun";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import type { ConfigInput } from "../../src/config/schema.ts";
import type { AuditStore } from "../../src/store/contract.ts";
import { advanceRollup, rollupCursor } from "../../src/store/postgres/rollup.ts";
import { PgAuditStore, type PgStoreOptions } from "../../src/store/postgres/store.ts";
import { SqliteAuditStore } from "../../src/store/sqlite/store.ts";
import type { CheckpointSettings } from "../../src/trail/checkpoint.ts";
import type { AuditRecord } from "../../src/trail/record.ts";
import { pgContext, pgServer, type PgSchema } from "./postgres.ts";
import { runCli, type CliResult } from "./process.ts";
import { startTestProxy, tempDir, type TestProxy } from "./proxy.ts";
import { sampleRecord, tamper } from "./records.ts";

/** What these tests use of a store, in the contract's terms. */
export type TestStore = Pick<AuditStore, "begin" | "commit" | "flush" | "recover" | "reader" | "trail" | "consents" | "keys" | "close">;

/** The trail settings a test may choose (the rest are the drivers' test defaults). */
export interface TrailOptions {
  /** Default: a checkpoint every 10 records (or hour). */
  checkpoint?: CheckpointSettings;
  retentionDays?: number;
  /** PostgreSQL only: the replica's lease and heartbeat (a survivor's recovery waits on them), how often retention runs. */
  replica?: Pick<PgStoreOptions, "leaseMs" | "heartbeatMs" | "retentionEveryMs">;
}

export interface OpenedTrail {
  store: TestStore;
  /** `--log-db` for the CLI (and for another store on the same trail). */
  logDb: string;
  /** The environment the CLI needs to sign for this trail (its signing key). */
  env: Record<string, string>;
  /** The signing key file. */
  signingKey: string;
  /** Runs SQL against the trail's tables directly. */
  tamper(sql: string): Promise<void>;
  /** Reads the trail's tables directly (PostgreSQL gives bigint columns, like seq, as strings: wrap them in Number()). */
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>;
  /** Another store on the same trail (another process on the SQLite file; another replica on PostgreSQL). */
  reopen(options?: TrailOptions): Promise<TestStore>;
  /** Folds every record into the usage rollup, as a running proxy does within seconds (SQLite's writer does it as it commits). */
  rollUp(): Promise<void>;
  /** Leaves `store` as kill -9 would: no more writes or heartbeats, nothing committed on the way out. */
  crash(store: TestStore): Promise<void>;
}

export interface TestDriver {
  name: "sqlite" | "postgres";
  open(label: string, options?: TrailOptions): Promise<OpenedTrail>;
}

const testCheckpoint = { everyRecords: 10, everySeconds: 3600 };

function sqliteStoreAt(logDb: string, signingKey: string, options: TrailOptions): TestStore {
  const store = new SqliteAuditStore(logDb, {
    checkpoint: options.checkpoint ?? testCheckpoint,
    signingKey,
    retentionDays: options.retentionDays,
  });
  return {
    begin: (record) => store.begin(record),
    commit: (record) => store.commit(record),
    flush: () => store.flush(),
    recover: async () => ({ interrupted: store.recoverInterrupted(), finished: 0 }),
    reader: store.reader,
    trail: store.trail,
    consents: store.consents,
    keys: store.keys,
    close: () => store.close(),
  };
}

export const sqliteDriver: TestDriver = {
  name: "sqlite",
  async open(_label, options = {}) {
    const dir = tempDir();
    const logDb = join(dir, "audit.db");
    const signingKey = join(dir, "signing-key");
    return {
      store: sqliteStoreAt(logDb, signingKey, options),
      logDb,
      signingKey,
      env: { AGENT_ATTR_SIGNING_KEY: signingKey },
      tamper: async (sql) => tamper(logDb, sql),
      query: async <T>(sql: string) => {
        const db = new Database(logDb, { readonly: true });
        try {
          return db.query(sql).all() as T[];
        } finally {
          db.close();
        }
      },
      reopen: async (again = {}) => sqliteStoreAt(logDb, signingKey, { ...options, ...again }),
      rollUp: async () => undefined,
      // The process "died": its store is left as it is (never closed), and the next one recovers.
      crash: async () => undefined,
    };
  },
};

let trails = 0;

/** PostgreSQL, each trail in its own schema derived from the test file's (dropped with it). */
export function postgresDriver(pg: () => PgSchema, keyDir = tempDir()): TestDriver {
  return {
    name: "postgres",
    async open(label, options = {}) {
      const schema = `${pg().schema}_${label}_${++trails}`;
      const logDb = pg().logDb.replace(/schema=.*$/, `schema=${schema}`);
      const signingKey = join(keyDir, "signing-key");
      const openStore = (opts: TrailOptions) => {
        const ctx = pgContext(logDb, keyDir);
        return PgAuditStore.open(
          { ...ctx, audit: { ...ctx.audit, checkpoint: opts.checkpoint ?? testCheckpoint, retentionDays: opts.retentionDays } },
          opts.replica,
        );
      };
      const inSchema = <T>(sql: string) =>
        pg().sql.begin(async (tx) => {
          await tx.unsafe(`SET LOCAL search_path TO "${schema}"`);
          return (await tx.unsafe(sql)) as T[];
        });
      return {
        store: await openStore(options),
        logDb,
        signingKey,
        env: { AGENT_ATTR_SIGNING_KEY: signingKey },
        tamper: async (sql) => void (await inSchema(sql)),
        query: async <T>(sql: string) => [...((await inSchema<T>(sql)) as T[])],
        reopen: (again = {}) => openStore({ ...options, ...again }),
        rollUp: async () => {
          const sql = new SQL(pgServer, { max: 1, connection: { search_path: schema } });
          try {
            // A fold that finds the cursor locked (a replica's heartbeat folds) skips: try until it is at the tail.
            for (let tries = 0; tries < 200; tries++) {
              await advanceRollup(sql);
              const [tail] = (await sql`SELECT coalesce(max(seq), 0) AS seq FROM audit_records`) as { seq: string }[];
              if ((await rollupCursor(sql)) >= Number(tail!.seq)) return;
              await Bun.sleep(20);
            }
            throw new Error("the usage rollup did not reach the chain's tail");
          } finally {
            await sql.close();
          }
        },
        crash: async (store) => {
          // What kill -9 leaves: no more heartbeats, no more appends, connections gone.
          const internals = store as unknown as {
            closed: boolean;
            heartbeatTimer: Timer;
            checkpointTimer: Timer;
            sql: PgAuditStore["sql"];
          };
          internals.closed = true;
          clearInterval(internals.heartbeatTimer);
          clearInterval(internals.checkpointTimer);
          await internals.sql.close({ timeout: 0 });
        },
      };
    },
  };
}

/**
 * A trail holding `n` records written through the store and closed (closing signs a checkpoint of
 * the tail), as a proxy that ran and stopped leaves it: for tests of the CLI and of verify.
 */
export async function trailOn(
  driver: TestDriver,
  label: string,
  n: number,
  options: TrailOptions & { record?: (i: number) => AuditRecord } = {},
): Promise<OpenedTrail> {
  const trail = await driver.open(label, options);
  await Promise.all(Array.from({ length: n }, (_, i) => trail.store.commit((options.record ?? sampleRecord)(i + 1))));
  await trail.store.close();
  return trail;
}

/** Runs the CLI on the trail (`--log-db` and its signing key), as an operator would. */
export function cliOn(trail: Pick<OpenedTrail, "logDb" | "env">, ...args: string[]): Promise<CliResult> {
  return runCli([...args, "--log-db", trail.logDb], { env: trail.env, timeoutMs: 30_000 });
}

/** The proxy in process on the trail (the trail's own store closed first: the proxy opens its own). */
export async function proxyOn(
  trail: OpenedTrail,
  upstreamURL: string,
  config: ConfigInput = {},
  options: Omit<Parameters<typeof startTestProxy>[2], "logDb"> = {},
): Promise<TestProxy> {
  await trail.store.close();
  return startTestProxy(
    upstreamURL,
    { ...config, audit: { signingKey: trail.signingKey, ...config.audit } },
    { ...options, logDb: trail.logDb },
  );
}

/** Verifies the trail as a later process would (a store opened on it); the verification is itself an event. */
export async function verifyTrail(trail: Pick<OpenedTrail, "reopen">) {
  const store = await trail.reopen();
  try {
    return await store.trail.verify("cli:test");
  } finally {
    await store.close();
  }
}
