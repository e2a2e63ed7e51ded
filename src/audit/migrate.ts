/**
 * Applies the drizzle-kit migrations embedded in the build (drizzle-kit's own migrator cannot use
 * bun:sqlite, and a compiled binary has no migrations folder on disk). Each runs once, in a
 * transaction, recorded in `__agent_attr_migrations`.
 */
import type { Database } from "bun:sqlite";
import m0000 from "./migrations/0000_swift_hitman.sql" with { type: "text" };
import m0001 from "./migrations/0001_awesome_bedlam.sql" with { type: "text" };

const migrations: { tag: string; sql: string }[] = [
  { tag: "0000_swift_hitman", sql: m0000 },
  { tag: "0001_awesome_bedlam", sql: m0001 },
];

export function migrate(db: Database): void {
  db.run("CREATE TABLE IF NOT EXISTS __agent_attr_migrations (tag TEXT PRIMARY KEY, applied_at TEXT NOT NULL)");
  const applied = new Set(
    db.query<{ tag: string }, []>("SELECT tag FROM __agent_attr_migrations").all().map((row) => row.tag),
  );
  for (const migration of migrations) {
    if (applied.has(migration.tag)) continue;
    db.transaction(() => {
      for (const statement of migration.sql.split("--> statement-breakpoint")) {
        if (statement.trim()) db.run(statement);
      }
      db.run("INSERT INTO __agent_attr_migrations (tag, applied_at) VALUES (?, ?)", [
        migration.tag,
        new Date().toISOString(),
      ]);
    }).immediate();
  }
}
