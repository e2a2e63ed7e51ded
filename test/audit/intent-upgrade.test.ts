// An intent written by the previous version (before the record gained `delegation`) still becomes
// an interrupted record after an upgrade, instead of being dropped for its shorter row.
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { columns, openAuditLog } from "../../src/audit/database.ts";
import { recoverIntents } from "../../src/audit/intent-log.ts";
import { tempDir } from "../helpers/proxy.ts";

test("a pre-upgrade intent row (one column short) is recovered with the new column null", async () => {
  const logDb = join(tempDir(), "audit.db");
  const log = openAuditLog(logDb);
  const old = columns.filter((c) => c !== "delegation").map((c): string | number | null =>
    c === "id" ? "old-intent" : c === "timestamp" ? "2026-01-01T00:00:00.000Z" : c === "attribution" ? "asserted"
      : c === "endpoint" ? "/v1/chat/completions" : c === "stream" ? 0 : c === "usage_source" ? "none" : null,
  );
  expect(columns.at(-1)).toBe("delegation");
  writeFileSync(`${logDb}.intents-999999999-0`, `${JSON.stringify(old)}\n`);
  expect(recoverIntents(log.db, logDb)).toBe(1);
  const record = await log.reader.record("old-intent");
  expect(record).toMatchObject({ id: "old-intent", outcome: "interrupted", delegation: null });
  log.close();
});
