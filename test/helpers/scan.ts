/**
 * Looks for values in the bytes of every file of a directory — the database, its WAL and
 * shared-memory files, intent-log segments — as someone holding the disk would. A hit in the
 * database file names its page, the page's type (13 table leaf, 10 index leaf, 5/2 interior, 0 free)
 * and the b-tree it belongs to, so a failure says where an erased value survived.
 */
import { Database } from "bun:sqlite";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

export interface Hit {
  needle: string;
  file: string;
  offset: number;
  /** For the database file: its page (1-based), the page type byte and the b-tree (dbstat). */
  page?: { number: number; type: number; btree: string | null };
}

export function findInFiles(dir: string, needles: readonly string[], database = "audit.db"): Hit[] {
  // Every byte first; only then is the database opened (to name the pages of hits in it).
  const files = readdirSync(dir).map((file) => ({ file, bytes: readFileSync(join(dir, file)) }));
  const hits: Hit[] = [];
  for (const { file, bytes } of files) {
    for (const needle of needles) {
      const pattern = Buffer.from(needle);
      for (let at = bytes.indexOf(pattern); at !== -1; at = bytes.indexOf(pattern, at + 1)) hits.push({ needle, file, offset: at });
    }
  }
  const inDatabase = hits.filter((hit) => hit.file === database);
  const btrees = inDatabase.length > 0 ? btreeOfPages(join(dir, database)) : null;
  const bytes = files.find((f) => f.file === database)?.bytes;
  for (const hit of btrees && bytes ? inDatabase : []) {
    const number = Math.floor(hit.offset / btrees!.pageSize) + 1;
    const start = (number - 1) * btrees!.pageSize + (number === 1 ? 100 : 0);
    hit.page = { number, type: bytes![start]!, btree: btrees!.names.get(number) ?? null };
  }
  return hits;
}

function btreeOfPages(path: string): { pageSize: number; names: Map<number, string> } | null {
  try {
    const db = new Database(path, { readonly: true });
    try {
      const pageSize = db.query<{ page_size: number }, []>("PRAGMA page_size").get()!.page_size;
      const rows = db.query<{ name: string; pageno: number }, []>("SELECT name, pageno FROM dbstat").all();
      return { pageSize, names: new Map(rows.map((row) => [row.pageno, row.name])) };
    } finally {
      db.close();
    }
  } catch {
    return null;
  }
}
