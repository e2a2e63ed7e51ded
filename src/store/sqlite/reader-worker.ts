/**
 * The audit store's reader thread: it owns the connection the audit API works on, so queries,
 * summaries, exports, erasures and audit-of-the-audit events — everything that can wait on a lock
 * another process holds (up to the busy timeout) or read for long — never block the proxy's event
 * loop. Requests are served one at a time, in order, each answered with its id (see
 * ./reader-protocol.ts). Verification has its own thread (./verify-worker.ts); the final records
 * theirs (./writer-worker.ts).
 */
import type { Database } from "bun:sqlite";
import { drizzle } from "drizzle-orm/bun-sqlite";
import { openDatabase } from "./database.ts";
import type { ExportRun } from "../../trail/export.ts";
import { SqliteAuditReader } from "./reader.ts";
import type { ReaderOperation, ReaderOperations, ReaderReply, ReaderRequest, ReaderSettings } from "./reader-protocol.ts";
import * as schema from "./schema.ts";
import { loadSigningKey } from "../../trail/signing.ts";
import { SqliteAuditTrail } from "./trail.ts";
import { SqliteConsents } from "./consents.ts";
import { SqliteKeyAdmin } from "./key-admin.ts";
import { SqliteProxyKeys } from "./keys.ts";
import { errorMessage } from "../../errors.ts";

declare const self: Worker;

let db: Database | null = null;
let reader: SqliteAuditReader | null = null;
let trail: SqliteAuditTrail | null = null;
let keys: SqliteKeyAdmin | null = null;
let consents: SqliteConsents | null = null;
let openFailure = "the reader thread has not been opened";
/** Exports in progress, by id, each with the generator of its chunks. */
const exports = new Map<string, { run: ExportRun; chunks: AsyncGenerator<Uint8Array> }>();

function open(settings: ReaderSettings): null {
  try {
    db = openDatabase(settings.path, settings.busyTimeoutMs);
    const signingKey = loadSigningKey(settings.signingKeyPath, { create: false });
    if (!signingKey) throw new Error(`the signing key ${settings.signingKeyPath} is missing`);
    reader = new SqliteAuditReader(drizzle(db, { schema }), db);
    // After an erasure the store has its writer thread rewrite the file (and compacts its intent
    // log), so this thread does not rewrite it a second time.
    trail = new SqliteAuditTrail(db, signingKey, Buffer.from(settings.hashKeyHex, "hex"), { afterErase: () => {} });
    keys = new SqliteKeyAdmin(new SqliteProxyKeys(db, { key: signingKey }), trail.chain);
    consents = new SqliteConsents(db, trail.chain);
    return null;
  } catch (error) {
    openFailure = `cannot open ${settings.path} for the audit API: ${errorMessage(error)}`;
    throw new Error(openFailure);
  }
}

const opened = () => {
  if (!reader || !trail || !keys || !consents) throw new Error(openFailure);
  return { reader, trail, keys, consents };
};

function exportOf(exportId: string) {
  const entry = exports.get(exportId);
  if (!entry) throw new Error(`no export ${exportId} is in progress`);
  return entry;
}

type Handlers = {
  [Op in ReaderOperation]: (args: ReaderOperations[Op]["args"]) => ReaderOperations[Op]["result"] | Promise<ReaderOperations[Op]["result"]>;
};

const handlers: Handlers = {
  open,
  records: ({ filter }) => opened().reader.records(filter),
  record: ({ recordId }) => opened().reader.record(recordId),
  summary: ({ filter }) => opened().reader.summary(filter),
  summaries: ({ filters }) => opened().reader.summaries(filters),
  event: ({ event }) => (opened().trail.appendEvent(event), null),
  erase: async ({ userId, actor }) => (await opened().trail.eraseUser(userId, actor), null),
  manifest: ({ exportId }) => opened().trail.manifest(exportId),
  events: ({ filter }) => opened().trail.events(filter),
  status: () => opened().trail.status(),
  entry: ({ seq }) => opened().trail.entry(seq),
  keysList: () => opened().keys.list(),
  keysCreate: ({ request, actor }) => opened().keys.create(request, actor),
  keysRevoke: ({ keyId, actor }) => opened().keys.revoke(keyId, actor),
  consentsList: ({ filter }) => opened().consents.list(filter),
  consentsGrant: ({ request, actor }) => opened().consents.grant(request, actor),
  consentsRevoke: ({ consentId, actor }) => opened().consents.revoke(consentId, actor),
  consentsExpire: () => opened().consents.recordExpiries(),
  exportStart: ({ exportId, format, filter, actor }) => {
    const run = opened().trail.export(format, filter, actor, exportId);
    exports.set(exportId, { run, chunks: run.chunks() });
    return null;
  },
  exportNext: async ({ exportId }) => {
    const { run, chunks } = exportOf(exportId);
    let next: IteratorResult<Uint8Array>;
    try {
      next = await chunks.next();
    } catch (error) {
      exports.delete(exportId);
      throw error;
    }
    if (next.done) exports.delete(exportId);
    return { chunk: next.done ? null : next.value, exported: run.exported };
  },
  exportCancel: async ({ exportId }) => {
    const entry = exports.get(exportId);
    if (!entry) return null; // already complete (or failed): nothing to cancel
    exports.delete(exportId);
    await entry.chunks.return(undefined);
    await entry.run.cancel();
    return null;
  },
  close: async () => {
    // An export still streaming at shutdown is recorded as cancelled, like one whose client left.
    for (const [exportId, { run }] of exports) {
      exports.delete(exportId);
      try {
        await run.cancel();
      } catch {
        // the database is unwritable: the export simply has no event, as before it started
      }
    }
    keys?.close();
    consents?.close();
    trail?.close();
    db?.close();
    db = reader = trail = keys = consents = null;
    openFailure = "the audit store is closed";
    return null;
  },
};

const reply = (message: ReaderReply, transfer: ArrayBuffer[] = []) => self.postMessage(message, transfer);

// Each handler runs to its end before the next message is taken (SQLite work is synchronous; its
// awaits resolve at once, in microtasks), so requests are served in the order they were sent.
self.onmessage = async (event: MessageEvent<ReaderRequest>) => {
  const { id, op, args } = event.data;
  try {
    const value = await (handlers[op] as (args: unknown) => unknown)(args);
    const chunk = op === "exportNext" ? (value as ReaderOperations["exportNext"]["result"]).chunk : null;
    reply({ id, ok: true, value }, chunk ? [chunk.buffer as ArrayBuffer] : []);
  } catch (error) {
    reply({ id, ok: false, message: errorMessage(error) });
  }
};
