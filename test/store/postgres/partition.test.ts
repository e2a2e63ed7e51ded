// A network partition between a replica and PostgreSQL: bytes stop, sockets stay open (what a
// dropped route or a dead load balancer does). Bun.sql would wait forever on such a connection;
// the store's own deadline turns it into a fast refusal, and the store recovers by itself once
// the network does.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Socket, SQL, TCPSocketListener } from "bun";
import { PgAuditStore } from "../../../src/store/postgres/store.ts";
import { recordFilterSchema } from "../../../src/store/filters.ts";
import { sampleRecord } from "../../helpers/records.ts";
import { pgContext, pgSchema, type PgSchema } from "../../helpers/postgres.ts";
import { tempDir } from "../../helpers/proxy.ts";
import { toRow } from "../../../src/trail/row.ts";

/** A TCP relay to the local PostgreSQL that can stop passing bytes without closing anything. */
interface Relay {
  port: number;
  frozen: boolean;
  stop(): void;
}

function startRelay(target: { host: string; port: number }): Relay {
  interface Pair {
    server: Socket<Pair>;
    upstream?: Socket<{ peer: Socket<Pair> }>;
    pending: Uint8Array[];
  }
  const relay: Relay = { port: 0, frozen: false, stop: () => listener.stop(true) };
  const listener: TCPSocketListener<Pair> = Bun.listen<Pair>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        socket.data = { server: socket, pending: [] };
        void Bun.connect<{ peer: Socket<Pair> }>({
          hostname: target.host,
          port: target.port,
          data: { peer: socket },
          socket: {
            data(up, bytes) {
              if (!relay.frozen) up.data.peer.write(bytes);
            },
            close(up) {
              up.data.peer.end();
            },
            error() {},
          },
        }).then((up) => {
          socket.data.upstream = up;
          for (const bytes of socket.data.pending.splice(0)) up.write(bytes);
        });
      },
      data(socket, bytes) {
        if (relay.frozen) return;
        if (socket.data.upstream) socket.data.upstream.write(bytes);
        else socket.data.pending.push(new Uint8Array(bytes));
      },
      close(socket) {
        socket.data.upstream?.end();
      },
      error() {},
    },
  });
  relay.port = listener.port;
  return relay;
}

let pg: PgSchema;
let relay: Relay;
beforeAll(async () => {
  pg = await pgSchema("partition");
  relay = startRelay({ host: "127.0.0.1", port: 5432 });
});
afterAll(async () => {
  relay.stop();
  await pg.drop();
});

test("a partition refuses calls within the store's deadline instead of hanging, and the store recovers when the network does", async () => {
  const logDb = pg.logDb.replace("127.0.0.1:5432", `127.0.0.1:${relay.port}`);
  const store = await PgAuditStore.open(pgContext(logDb), { deadlineMs: 500 });
  try {
    const before = sampleRecord(1);
    await store.begin({ ...before, outcome: null });
    await store.commit(before);
    await store.flush();
    relay.frozen = true;
    const started = performance.now();
    await expect(store.begin(sampleRecord(2, { outcome: null }))).rejects.toThrow(/cannot be written.*did not answer within 500 ms/);
    expect(performance.now() - started).toBeLessThan(3000);
    relay.frozen = false;
    // New connections pass again: the next call is durable and lands.
    let landed = false;
    for (const deadline = Date.now() + 10_000; !landed && Date.now() < deadline; ) {
      const after = sampleRecord(3);
      try {
        await store.begin({ ...after, outcome: null });
        await store.commit(after);
        await store.flush();
        landed = (await store.reader.record("rec-3")) !== null;
      } catch {
        await Bun.sleep(200);
      }
    }
    expect(landed).toBe(true);
    const page = await store.reader.records(recordFilterSchema.parse({}));
    expect(page.records.map((r) => r.id).sort()).toEqual(["rec-1", "rec-3"]);
    expect((await store.trail.verify("cli:test")).ok).toBe(true);
  } finally {
    await store.close();
  }
}, 30_000);

test("an intent group PostgreSQL commits after the store gave up on it is taken back: no record for a call that was refused", async () => {
  // The answer is lost, not the INSERT: here it waits on a lock past the store's deadline, the store
  // refuses the call (it is never forwarded), and PostgreSQL commits the group once the lock goes.
  const own = await pgSchema("late_group");
  const keyDir = tempDir();
  const store = await PgAuditStore.open(pgContext(own.logDb, keyDir), { deadlineMs: 500, leaseMs: 1000, heartbeatMs: 60_000 });
  const holder = await own.sql.reserve();
  try {
    const first = sampleRecord(11);
    await store.begin({ ...first, outcome: null });
    await store.commit(first);
    await store.flush();
    await holder`BEGIN`;
    await holder`SELECT 1 FROM audit_replicas WHERE replica_id = ${store.replicaId} FOR UPDATE`;
    await expect(store.begin(sampleRecord(12, { outcome: null }))).rejects.toThrow(/did not answer within 500 ms/);
    await holder`COMMIT`;
    const groupsHolding = async (id: string) =>
      ((await own.sql`SELECT count(*)::int AS n FROM audit_intent_groups WHERE intents::text LIKE ${`%"${id}"%`}`) as { n: number }[])[0]!
        .n;
    // The INSERT the store gave up on lands now; the store deletes it again.
    let left = 1;
    for (const deadline = Date.now() + 10_000; left > 0 && Date.now() < deadline; await Bun.sleep(100))
      left = await groupsHolding("rec-12");
    expect(left).toBe(0);
    const next = sampleRecord(13);
    await store.begin({ ...next, outcome: null });
    await store.commit(next);
    await store.close();
    // A clean close takes the tombstone with the replica's row (nothing is left for a survivor).
    expect(await own.sql`SELECT 1 FROM audit_replicas WHERE replica_id = ${store.replicaId}`).toHaveLength(0);
    expect(await own.sql`SELECT 1 FROM audit_intent_groups WHERE replica_id = ${store.replicaId}`).toHaveLength(0);
    // Nothing of the refused call is left for a survivor to record as interrupted.
    const survivor = await PgAuditStore.open(pgContext(own.logDb, keyDir), { leaseMs: 1000 });
    try {
      await Bun.sleep(1100);
      expect((await survivor.recover()).interrupted).toBe(0);
      const ids = (await survivor.reader.records(recordFilterSchema.parse({}))).records.map((r) => r.id);
      expect(ids).toContain("rec-11");
      expect(ids).toContain("rec-13");
      expect(ids).not.toContain("rec-12");
    } finally {
      await survivor.close();
    }
  } finally {
    holder.release();
    await store.close();
    await own.drop();
  }
}, 30_000);

test("closing while PostgreSQL is unreachable tries the last tombstone once: no retry timer outlives the store", async () => {
  const own = await pgSchema("close_down");
  const ownRelay = startRelay({ host: "127.0.0.1", port: 5432 });
  const store = await PgAuditStore.open(pgContext(own.logDb.replace("127.0.0.1:5432", `127.0.0.1:${ownRelay.port}`)), {
    deadlineMs: 300,
    heartbeatMs: 60_000,
  });
  const intents = (store as unknown as { intents: { bury(): Promise<boolean>; buryTimer: Timer | undefined } }).intents;
  const bury = intents.bury.bind(intents);
  let closed = false;
  let buriedAfterClose = 0;
  intents.bury = () => {
    if (closed) buriedAfterClose++;
    return bury();
  };
  try {
    ownRelay.frozen = true;
    await expect(store.begin(sampleRecord(31, { outcome: null }))).rejects.toThrow(/did not answer within 300 ms/);
    const closing = store.close();
    await Bun.sleep(0);
    closed = true;
    await closing;
    const after = buriedAfterClose; // close's own last try, at most
    await Bun.sleep(1500);
    expect(after).toBeLessThanOrEqual(1);
    expect(buriedAfterClose).toBe(after);
    expect(intents.buryTimer).toBeUndefined();
  } finally {
    ownRelay.frozen = false;
    ownRelay.stop();
    await own.drop();
  }
}, 30_000);

test("close keeps the replica's row and a group whose INSERT commits while close waits on it", async () => {
  const own = await pgSchema("close_race");
  const store = await PgAuditStore.open(pgContext(own.logDb), { deadlineMs: 2000, heartbeatMs: 60_000 });
  const flusher = await own.sql.reserve();
  try {
    // A group INSERT as the store's flush makes it, held open in a transaction: it holds the
    // replica row (KEY SHARE) and its row is written, not yet committed.
    const intents = JSON.stringify([toRow(sampleRecord(41, { outcome: null }))]);
    await flusher`BEGIN`;
    await flusher`INSERT INTO audit_intent_groups (replica_id, n, intents)
      SELECT ${store.replicaId}, 99, ${intents}
      WHERE EXISTS (SELECT 1 FROM audit_replicas WHERE replica_id = ${store.replicaId} FOR KEY SHARE)`;
    const closing = store.close();
    await Bun.sleep(300);
    await flusher`COMMIT`; // durable now: its call would be forwarded
    await closing;
    // The group is a call in flight: it stays, and the replica's row with it (a survivor records it).
    expect(await own.sql`SELECT n FROM audit_intent_groups`).toHaveLength(1);
    expect(await own.sql`SELECT 1 FROM audit_replicas WHERE replica_id = ${store.replicaId}`).toHaveLength(1);
  } finally {
    flusher.release();
    await store.close();
    await own.drop();
  }
}, 30_000);

test("a write whose deadline passed while every pooled connection was busy does not run late, and its connection goes back", async () => {
  const own = await pgSchema("late_reserve");
  const store = await PgAuditStore.open(pgContext(own.logDb), { deadlineMs: 500, heartbeatMs: 60_000 });
  const pool = store.sql;
  // No tombstones here: what is in audit_intent_groups is what the refused write left.
  (store as unknown as { intents: { bury(): Promise<boolean> } }).intents.bury = () => Promise.resolve(false);
  try {
    const held = await Promise.all(Array.from({ length: 8 }, () => pool.reserve()));
    await expect(store.begin(sampleRecord(51, { outcome: null }))).rejects.toThrow(/did not answer within 500 ms/);
    for (const connection of held) connection.release();
    await Bun.sleep(500);
    // The refused call's group was not written once a connection came free.
    expect(await own.sql`SELECT n FROM audit_intent_groups WHERE intents <> '[]'`).toHaveLength(0);
    // Every pooled connection can be reserved again.
    const again: SQL[] = [];
    for (let i = 0; i < 8; i++) {
      const connection = await Promise.race([pool.reserve(), Bun.sleep(1000).then(() => null)]);
      if (!connection) break;
      again.push(connection);
    }
    for (const connection of again) (connection as SQL & { release(): void }).release();
    expect(again).toHaveLength(8);
  } finally {
    await store.close();
    await own.drop();
  }
}, 30_000);
