// The chain walk is the drivers' shared verify: entries pushed from anywhere (here: an async
// source with no database at all, as a PostgreSQL driver would stream them) are checked the same.
import { expect, test } from "bun:test";
import { ChainHasher, currentRecordVersion, genesisHash, recordVersions } from "../../src/trail/chain.ts";
import { columns, toRow } from "../../src/trail/row.ts";
import { ChainWalk, finishVerification, startVerification, type ChainRecordRow } from "../../src/trail/verify.ts";
import { sampleRecord } from "../helpers/records.ts";

/**
 * A chain of `n` records as a driver stores them, each hashed under the version `versionOf` gives
 * (default: the current one, with tags; v2 rows, as 0.1 wrote them, have none).
 */
function chainOf(n: number, versionOf: (i: number) => number = () => currentRecordVersion): ChainRecordRow[] {
  const hasher = new ChainHasher();
  let prev = genesisHash;
  return Array.from({ length: n }, (_, i) => {
    const version = versionOf(i);
    const layout = recordVersions[version]!;
    const tagged = version >= 3 ? { tags: '{"team":"platform"}', personal_tags: '{"email":"a@example.com"}' } : {};
    const row = toRow({ ...sampleRecord(i + 1), ...tagged });
    const named = Object.fromEntries(columns.map((column, c) => [column, row[c]!])) as Record<
      (typeof columns)[number],
      string | number | null
    >;
    const salt = "ab".repeat(16);
    const commitment = hasher.commitment(
      salt,
      layout.personalColumns.map((column) => named[column]),
    );
    const hash = hasher.record(
      prev,
      layout.clearColumns.map((column) => named[column]),
      commitment,
      layout,
    );
    const entry: ChainRecordRow = { ...named, seq: i + 1, salt, commitment, prev_hash: prev, hash, hash_version: version };
    prev = hash;
    return entry;
  });
}

async function verify(rows: ChainRecordRow[]) {
  const start = startVerification("chain-1", [], [], null);
  const walk = new ChainWalk(start.report, start.checkpoints, { ranges: [], rejected: [] });
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

test("record hash versions: a 0.1 trail (v2) followed by v3 records verifies; tags are covered by v3", async () => {
  const mixed = () => chainOf(6, (i) => (i < 3 ? 2 : 3));
  expect(await verify(mixed())).toMatchObject({ ok: true, records: 6 });
  const tags = mixed();
  tags[4]!.tags = '{"team":"finance"}';
  expect((await verify(tags)).failure).toMatchObject({ seq: 5, reason: "edited" });
  const personal = mixed();
  personal[4]!.personal_tags = '{"email":"mallory@example.com"}';
  expect((await verify(personal)).failure).toMatchObject({ seq: 5, reason: "edited" });
});

test("record hash versions: a tag written into a v2 row, or a row's version changed, is an edit", async () => {
  const intoV2 = chainOf(4, (i) => (i < 2 ? 2 : 3));
  intoV2[1]!.tags = '{"team":"finance"}';
  expect((await verify(intoV2)).failure).toMatchObject({ seq: 2, reason: "edited" });
  const personalIntoV2 = chainOf(4, (i) => (i < 2 ? 2 : 3));
  personalIntoV2[0]!.personal_tags = '{"email":"mallory@example.com"}';
  expect((await verify(personalIntoV2)).failure).toMatchObject({ seq: 1, reason: "edited" });
  const downgraded = chainOf(4);
  downgraded[2]!.hash_version = 2;
  downgraded[2]!.tags = null;
  downgraded[2]!.personal_tags = null;
  expect((await verify(downgraded)).failure).toMatchObject({ seq: 3, reason: "edited" });
  const unknown = chainOf(3);
  unknown[1]!.hash_version = 9;
  expect((await verify(unknown)).failure).toMatchObject({ seq: 2, reason: "edited" });
  expect((await verify(unknown)).failure?.message).toContain("hash version (9)");
});

test("the current record hash version covers every record field, and v2 the fields of agent-attr 0.1 only", () => {
  const current = recordVersions[currentRecordVersion]!;
  expect([...current.clearColumns, ...current.personalColumns].sort()).toEqual([...columns].sort());
  expect(current.uncoveredColumns).toEqual([]);
  expect(recordVersions[2]!.uncoveredColumns).toEqual(["tags", "personal_tags", "consent_id", "purpose", "lawful_basis", "consent_source"]);
  expect(recordVersions[2]!.label).toBe("agent-attr/record/v2");
});
