// The chain walk is the drivers' shared verify: entries pushed from anywhere (here: an async
// source with no database at all, as a PostgreSQL driver would stream them) are checked the same.
import { expect, test } from "bun:test";
import { ChainHasher, clearColumns, genesisHash, personalColumns } from "../../src/trail/chain.ts";
import { columns, toRow } from "../../src/trail/row.ts";
import { ChainWalk, finishVerification, startVerification, type ChainRecordRow } from "../../src/trail/verify.ts";
import { sampleRecord } from "../helpers/records.ts";

/** A chain of `n` records as a driver stores them. */
function chainOf(n: number): ChainRecordRow[] {
  const hasher = new ChainHasher();
  let prev = genesisHash;
  return Array.from({ length: n }, (_, i) => {
    const row = toRow(sampleRecord(i + 1));
    const named = Object.fromEntries(columns.map((column, c) => [column, row[c]!])) as Record<
      (typeof columns)[number],
      string | number | null
    >;
    const salt = "ab".repeat(16);
    const commitment = hasher.commitment(
      salt,
      personalColumns.map((column) => named[column]),
    );
    const hash = hasher.record(
      prev,
      clearColumns.map((column) => named[column]),
      commitment,
    );
    const entry: ChainRecordRow = { ...named, seq: i + 1, salt, commitment, prev_hash: prev, hash, hash_version: 3 };
    prev = hash;
    return entry;
  });
}

async function verify(rows: ChainRecordRow[]) {
  const start = startVerification("chain-1", [], [], null);
  const walk = new ChainWalk(start.report, start.checkpoints, []);
  async function* chunks() {
    for (let i = 0; i < rows.length; i += 2) yield rows.slice(i, i + 2);
  }
  const seqOfHash = async (hash: string) => rows.find((row) => row.hash === hash)?.seq ?? null;
  for await (const chunk of chunks()) {
    for (const row of chunk) {
      const step = walk.next(row, true);
      if (step === null) continue;
      const failure = "brokenLink" in step ? walk.brokenLink(row, true, await seqOfHash(row.prev_hash!)) : step;
      return finishVerification(start.report, [failure]);
    }
  }
  return finishVerification(start.report, [walk.end()]);
}

test("an intact chain streamed from an async source verifies", async () => {
  expect(await verify(chainOf(5))).toMatchObject({ ok: true, records: 5, last_seq: 5, failure: null });
});

test("an edited field, an edited personal field and a moved entry are told apart", async () => {
  const edited = chainOf(5);
  edited[2]!.model = "gpt-4o-mini";
  expect((await verify(edited)).failure).toMatchObject({ seq: 3, reason: "edited" });
  const personal = chainOf(5);
  personal[1]!.user_id = "mallory";
  expect((await verify(personal)).failure).toMatchObject({ seq: 2, reason: "edited" });
  const moved = chainOf(5);
  [moved[1]!.seq, moved[3]!.seq] = [4, 2];
  moved.sort((a, b) => a.seq - b.seq);
  expect((await verify(moved)).failure).toMatchObject({ seq: 2, reason: "reordered" });
});
