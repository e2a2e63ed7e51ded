// Exit codes that do not collide (docs/operators.md, "CLI errors and exit codes"): only a verdict that the trail was tampered
// with (or an export changed) exits 1; a usage error, a bad config, a missing database and a bug
// each have their own code, so `agent-attr audit verify || page-the-auditor` pages for tampering only.
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";
import { tamper, trailWith } from "../helpers/records.ts";

test("audit verify: 0 intact, 1 tampered, 2 usage error, 3 bad config, 4 no database — never 1 for anything but tampering", async () => {
  const intact = await trailWith(3);
  const tampered = await trailWith(3);
  tamper(tampered, "UPDATE audit_records SET model = 'gpt-5' WHERE seq = 2");
  const dir = tempDir();
  const badConfig = join(dir, "agent-attr.config.ts");
  writeFileSync(badConfig, "export default { audit: { logDb: 42 } };\n");
  const outcomes = {
    intact: await runCli(["audit", "verify", "--log-db", intact]),
    tampered: await runCli(["audit", "verify", "--log-db", tampered]),
    usage: await runCli(["audit", "verify", "--log-db", intact, "--fromat", "json"]),
    config: await runCli(["audit", "verify", "--config", badConfig]),
    missing: await runCli(["audit", "verify", "--log-db", join(dir, "nothing-here.db")]),
  };
  expect(Object.fromEntries(Object.entries(outcomes).map(([name, r]) => [name, r.exitCode]))).toEqual({
    intact: 0,
    tampered: 1,
    usage: 2,
    config: 3,
    missing: 4,
  });
  expect(outcomes.tampered.stdout).toContain("TAMPERED at seq 2");
  expect(outcomes.usage.stderr).toContain("Did you mean '--format'?");
  expect(outcomes.config.stderr).toContain("audit.logDb");
  expect(outcomes.missing.stderr).toContain("No audit database at");
}, 20_000);

test("a file that is not a database is an I/O error (4), not an internal error or tampering", async () => {
  const notADb = join(tempDir(), "notes.db");
  writeFileSync(notADb, "these are not the records you are looking for\n".repeat(100));
  const result = await runCli(["audit", "verify", "--log-db", notADb]);
  expect(result.exitCode).toBe(4);
  expect(result.stderr).toContain(notADb);
  expect(result.stderr).not.toContain("internal error");
  expect(result.stderr).not.toContain("    at ");
});
