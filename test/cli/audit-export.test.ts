// `agent-attr audit export` and `audit verify-export`, on both drivers: streamed CSV/JSON/NDJSON
// with a signed manifest beside the file; spreadsheet-safe CSV; a one-byte change is caught offline;
// each export (complete, cut off, interrupted) a chain event.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ExportManifest } from "../../src/trail/export.ts";
import type { AuditRecord } from "../../src/trail/record.ts";
import { cliOn, postgresDriver, sqliteDriver, trailOn, type OpenedTrail, type TestDriver } from "../helpers/drivers.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { cliPath, runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";
import { sampleRecord } from "../helpers/records.ts";

const injections = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A2)", "\tTAB", "\rCR", 'plain, "quoted"'];
const day = (n: number) => new Date(Date.UTC(2026, 0, n, 12)).toISOString();

let pg: PgSchema;
beforeAll(async () => {
  pg = await pgSchema("cli_export");
});
afterAll(async () => {
  await pg.drop();
});

describe.each([sqliteDriver, postgresDriver(() => pg)])("audit export on $name", (driver: TestDriver) => {
  let trail: OpenedTrail;
  let dir: string;
  beforeAll(async () => {
    trail = await trailOn(driver, "export", 7, {
      record: (i) => sampleRecord(i, { task_context: injections[i - 1]!, timestamp: day(i), cost_usd: i === 3 ? -1.5 : 0.25 }),
    });
    dir = tempDir();
  });

  const exportTo = async (name: string, ...args: string[]) => {
    const output = join(dir, name);
    const result = await cliOn(trail, "audit", "export", "--output", output, ...args);
    return { ...result, output, manifest: () => JSON.parse(readFileSync(`${output}.manifest.json`, "utf8")) as ExportManifest };
  };

  test("CSV: the record field names as header, formula payloads neutralised, numbers stay numbers", async () => {
    const { exitCode, output, stderr } = await exportTo("all.csv", "--format", "csv");
    expect(exitCode).toBe(0);
    expect(stderr).toContain("Exported 7 records");
    const text = readFileSync(output, "utf8");
    const lines = text.split("\r\n");
    expect(lines[0]).toStartWith("id,seq,timestamp,duration_ms,ttfb_ms,agent_id,user_id,task_context,");
    expect(text).toContain(",'=cmd|' /C calc'!A0,");
    expect(text).toContain(",'+1+1,");
    expect(text).toContain(",'-2+3,");
    expect(text).toContain(",'@SUM(A1:A2),");
    expect(text).toContain(",'\tTAB,");
    expect(text).toContain(`,"'\rCR",`);
    expect(text).toContain(`,"plain, ""quoted""",`);
    // No cell starts with a formula character unless prefixed (a negative number is a number).
    expect(lines[3]).toContain(",-1.5,");
    expect(lines[1]).toContain(",12.5,3,reviewer,");
  });

  test("the manifest: count, seq range, first/last chain hash, SHA-256, signature; verify-export passes", async () => {
    const { output, manifest } = await exportTo("all.ndjson", "--format", "ndjson");
    const m = manifest();
    const hashOf = async (seq: number) =>
      (await trail.query<{ hash: string }>(`SELECT hash FROM audit_records WHERE seq = ${seq}`))[0]!.hash;
    expect(m).toMatchObject({
      record_count: 7,
      first_seq: 1,
      last_seq: 7,
      first_hash: await hashOf(1),
      last_hash: await hashOf(7),
      format: "ndjson",
    });
    const bytes = readFileSync(output);
    expect(m.bytes).toBe(bytes.byteLength);
    expect(m.sha256).toBe(new Bun.CryptoHasher("sha256").update(bytes).digest("hex"));
    const lines = bytes
      .toString()
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as AuditRecord);
    expect(lines.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(lines[1]!.stream).toBe(true);
    const pub = join(dir, "all-pub.pem");
    writeFileSync(pub, (await cliOn(trail, "audit", "pubkey")).stdout);
    const check = await runCli(["audit", "verify-export", output, "--public-key", pub]);
    expect(check.exitCode).toBe(0);
    expect(check.stdout).toContain("intact — 7 records, seq 1..7");
    // Without a trusted key: integrity checked, but not reported intact (exit 2).
    const unpinned = await runCli(["audit", "verify-export", output]);
    expect(unpinned.exitCode).toBe(6);
    expect(unpinned.stdout).toContain("integrity ok");
    expect(unpinned.stdout).toContain("--public-key");
  });

  test("a changed export with a manifest re-signed by the forger's own key is not reported intact", async () => {
    const { output, manifest } = await exportTo("forged.ndjson", "--format", "ndjson");
    const { generateKeyPairSync } = await import("node:crypto");
    const { manifestPayload } = await import("../../src/trail/export.ts");
    const { publicKeyPem, signBytes } = await import("../../src/trail/signing.ts");
    const forgedBytes = Buffer.from(
      readFileSync(output)
        .toString()
        .replace(/"output_tokens":5/g, '"output_tokens":1'),
    );
    writeFileSync(output, forgedBytes);
    const forger = generateKeyPairSync("ed25519").privateKey;
    const { signature: _, ...unsigned } = {
      ...manifest(),
      bytes: forgedBytes.byteLength,
      sha256: new Bun.CryptoHasher("sha256").update(forgedBytes).digest("hex"),
      public_key: publicKeyPem(forger),
    };
    writeFileSync(`${output}.manifest.json`, JSON.stringify({ ...unsigned, signature: signBytes(forger, manifestPayload(unsigned)) }));
    const unpinned = await runCli(["audit", "verify-export", output]);
    expect(unpinned.exitCode).toBe(6);
    expect(unpinned.stdout).not.toContain("intact");
    const pub = join(dir, "forged-pub.pem");
    writeFileSync(pub, (await cliOn(trail, "audit", "pubkey")).stdout);
    expect((await runCli(["audit", "verify-export", output, "--public-key", pub])).exitCode).toBe(1);
  });

  test("a one-byte change to the export, or an edited manifest, fails verify-export", async () => {
    const { output } = await exportTo("changed.json", "--format", "json");
    const original = readFileSync(output);
    expect((JSON.parse(original.toString()) as AuditRecord[]).length).toBe(7);
    const changed = Buffer.from(original);
    const at = changed.indexOf("gpt-4o");
    changed[at] = "G".charCodeAt(0);
    writeFileSync(output, changed);
    const check = await runCli(["audit", "verify-export", output]);
    expect(check.exitCode).toBe(1);
    expect(check.stdout).toContain("SHA-256");
    writeFileSync(output, original);
    const manifestFile = `${output}.manifest.json`;
    const manifest = JSON.parse(readFileSync(manifestFile, "utf8")) as ExportManifest;
    writeFileSync(manifestFile, JSON.stringify({ ...manifest, record_count: 6 }));
    const forged = await runCli(["audit", "verify-export", output]);
    expect(forged.exitCode).toBe(1);
    expect(forged.stdout).toContain("signature");
  });

  test("--public-key pins the signer: a manifest re-signed with another key is refused", async () => {
    const { output } = await exportTo("pinned.csv", "--format", "csv");
    const pub = join(dir, "pub.pem");
    writeFileSync(pub, (await cliOn(trail, "audit", "pubkey")).stdout);
    expect((await runCli(["audit", "verify-export", output, "--public-key", pub])).exitCode).toBe(0);
    const { generateKeyPairSync } = await import("node:crypto");
    const other = join(dir, "other.pem");
    writeFileSync(other, generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString());
    const refused = await runCli(["audit", "verify-export", output, "--public-key", other]);
    expect(refused.exitCode).toBe(1);
  });

  test("--start-date/--end-date bound the export by day (inclusive), and filters combine", async () => {
    const { manifest } = await exportTo("range.csv", "--format", "csv", "--start-date", "2026-01-03", "--end-date", "2026-01-05");
    expect(manifest()).toMatchObject({ record_count: 3, first_seq: 3, last_seq: 5 });
    expect(manifest().filters).toEqual({
      start_date: "2026-01-03T00:00:00.000Z",
      end_date: "2026-01-05T23:59:59.999Z",
      agent: null,
      user: false,
      task: false,
    });
    const byUser = await exportTo("user.csv", "--format", "csv", "--user", "user-1");
    expect(byUser.manifest()).toMatchObject({ record_count: 3, filters: { user: true } });
    expect(JSON.stringify(byUser.manifest())).not.toContain("user-1");
    const bad = await cliOn(trail, "audit", "export", "--format", "csv", "--start-date", "soon");
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain("--start-date");
  });

  test("each export is a chain event holding its manifest, and the chain still verifies", async () => {
    const { manifest } = await exportTo("event.csv", "--format", "csv");
    const rows = await trail.query<{ actor: string; details: string }>("SELECT actor, details FROM audit_events WHERE kind = 'export'");
    const manifests = rows.map((row) => (JSON.parse(row.details) as { manifest: ExportManifest }).manifest);
    expect(manifests.map((m) => m.export_id)).toContain(manifest().export_id);
    expect(rows[0]!.actor).toStartWith("cli");
    expect((await cliOn(trail, "audit", "verify")).exitCode).toBe(0);
  });

  test("an export cut off by a write error (disk full) is recorded as cancelled, with the records produced, and fails", async () => {
    const result = await cliOn(trail, "audit", "export", "--format", "csv", "--output", "/dev/full");
    expect(result.exitCode).toBe(4); // I/O: disk full
    expect(result.stderr).toContain("recorded as cancelled");
    const [last] = await trail.query<{ details: string }>(
      "SELECT details FROM audit_events WHERE kind = 'export' ORDER BY seq DESC LIMIT 1",
    );
    expect(JSON.parse(last!.details)).toMatchObject({ format: "csv", cancelled: true, records_sent_at_most: 7 });
    expect((await cliOn(trail, "audit", "verify")).exitCode).toBe(0);
  });

  test("an export interrupted with SIGINT is recorded as cancelled with the records produced so far", async () => {
    const big = await trailOn(driver, "sigint", 1500);
    const child = Bun.spawn(["bun", cliPath, "audit", "export", "--format", "csv", "--log-db", big.logDb], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, ...big.env },
    });
    const reader = child.stdout.getReader();
    await reader.read(); // the child is now writing its first chunk of 512 rows into a full pipe
    child.kill("SIGINT");
    while (!(await reader.read()).done) {
      // drain, so the blocked write completes and the handler runs before the next chunk
    }
    expect(await child.exited).toBe(130);
    expect(await new Response(child.stderr).text()).toContain("interrupted after");
    const [last] = await big.query<{ details: string }>("SELECT details FROM audit_events WHERE kind = 'export' ORDER BY seq DESC LIMIT 1");
    const details = JSON.parse(last!.details) as { cancelled?: boolean; records_sent_at_most?: number };
    expect(details.cancelled).toBe(true);
    expect(details.records_sent_at_most).toBeLessThan(1500);
  }, 20_000);

  test("an export of a trail edited behind the store is refused: exit 1, the seq and what to run, no manifest, recorded as refused", async () => {
    const edited = await trailOn(driver, "edited", 5);
    await edited.tamper("UPDATE audit_records SET cost_usd = 99 WHERE seq = 2");
    const output = join(dir, "edited.csv");
    const result = await cliOn(edited, "audit", "export", "--format", "csv", "--output", output);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain("the export was refused at seq 2");
    expect(result.stderr).toContain("agent-attr audit verify");
    expect(() => readFileSync(`${output}.manifest.json`)).toThrow();
    const [last] = await edited.query<{ details: string }>(
      "SELECT details FROM audit_events WHERE kind = 'export' ORDER BY seq DESC LIMIT 1",
    );
    expect(JSON.parse(last!.details)).toMatchObject({ cancelled: true, refused: { seq: 2, reason: "edited" } });
  });
});
