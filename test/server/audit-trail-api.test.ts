// The trail routes on a running proxy, on both drivers: verify, pubkey, DELETE /audit/user/:id,
// exports and their manifests; the CLI and the proxy writing the same trail at the same time keep
// one unbroken chain.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { ExportManifest } from "../../src/trail/export.ts";
import type { VerifyReport } from "../../src/trail/verify.ts";
import { cliOn, postgresDriver, proxyOn, sqliteDriver, trailOn, type OpenedTrail, type TestDriver } from "../helpers/drivers.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import type { TestProxy } from "../helpers/proxy.ts";

let pg: PgSchema;
let upstream: FakeUpstream;
beforeAll(async () => {
  pg = await pgSchema("trail_api");
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
  await pg.drop();
});

describe.each([sqliteDriver, postgresDriver(() => pg)])("the trail routes on $name", (driver: TestDriver) => {
  let trail: OpenedTrail;
  let proxy: TestProxy;
  beforeAll(async () => {
    trail = await driver.open("routes");
    proxy = await proxyOn(trail, upstream.url);
  });
  afterAll(async () => {
    await proxy.stop();
  });

  async function call(user: string, headers: Record<string, string> = {}) {
    const response = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-agent-id": "bot", "x-user-id": user, ...headers },
      body: JSON.stringify({ model: "gpt-4o", messages: [] }),
    });
    await response.arrayBuffer();
  }

  test("GET /audit/verify: 200 and the summary while the chain is intact", async () => {
    await call("alice");
    await proxy.records();
    const response = await fetch(`${proxy.url}/audit/verify`);
    expect(response.status).toBe(200);
    expect((await response.json()) as VerifyReport).toMatchObject({ ok: true, failure: null });
  });

  test("GET /audit/pubkey: the checkpoint key, the same one the CLI prints", async () => {
    const response = await fetch(`${proxy.url}/audit/pubkey`);
    const cli = await cliOn(trail, "audit", "pubkey");
    expect(await response.text()).toBe(cli.stdout);
  });

  test("CLI erasures and verifications while the proxy records traffic: one chain, no fork, no gap", async () => {
    const cli = [
      cliOn(trail, "audit", "delete", "--user", "user-1"),
      cliOn(trail, "audit", "verify"),
      cliOn(trail, "audit", "delete", "--user", "user-2"),
    ];
    let cliDone = false;
    void Promise.all(cli).then(() => (cliDone = true));
    // Traffic flows for as long as the CLI processes run (so their writes interleave with the proxy's).
    let calls = 0;
    while (!cliDone || calls < 40) {
      await Promise.all(Array.from({ length: 8 }, (_, i) => call(`user-${(calls + i) % 4}`)));
      calls += 8;
    }
    for (const result of await Promise.all(cli)) expect(result.stderr).toBe("");
    await proxy.records();
    const response = await fetch(`${proxy.url}/audit/verify`);
    const report = (await response.json()) as VerifyReport;
    expect(response.status).toBe(200);
    expect(report.failure).toBeNull();
    expect(report.records).toBe(calls + 1);
    // 2 erasures, 2 verifications (the CLI's and the first test's), plus one erasure event per batch
    // that redacted records of calls in flight at the time (they account for those redactions).
    const details = await trail.query<{ details: string }>("SELECT details FROM audit_events");
    const landed = details.filter((row) => (JSON.parse(row.details) as { on_landing?: boolean }).on_landing).length;
    expect(report.events - landed).toBe(4);
    const seqs = await trail.query<{ seq: number | string }>(
      "SELECT seq FROM audit_records UNION ALL SELECT seq FROM audit_events ORDER BY seq",
    );
    expect(seqs.map((row) => Number(row.seq))).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    // This verification's own event comes after the seq it verified up to.
    expect(report.last_seq).toBe(seqs.length - 1);
  });

  test("DELETE /audit/user/:id erases the user; the answer is the same for a user who never called", async () => {
    await call("erase-me");
    await proxy.records();
    const known = await fetch(`${proxy.url}/audit/user/erase-me`, { method: "DELETE" });
    const unknown = await fetch(`${proxy.url}/audit/user/never-seen`, { method: "DELETE" });
    expect([known.status, unknown.status]).toEqual([200, 200]);
    expect(await known.text()).toBe(await unknown.text());
    const after = (await (await fetch(`${proxy.url}/audit/user/erase-me`)).json()) as { records: unknown[] };
    expect(after.records).toEqual([]);
    const report = (await (await fetch(`${proxy.url}/audit/verify`)).json()) as VerifyReport;
    expect(report.ok).toBe(true);
    expect(report.redacted).toBeGreaterThanOrEqual(1);
  });

  test("with tokens, the trail routes need one: erasure the admin role, the rest auditor; events name the role", async () => {
    const admin = "admin-token-0123456789";
    const auditor = "auditor-token-0123456789";
    const guardedTrail = await driver.open("guarded");
    const guarded = await proxyOn(guardedTrail, upstream.url, {}, { adminToken: admin, auditorToken: auditor });
    const as = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
    try {
      expect((await fetch(`${guarded.url}/audit/user/x`, { method: "DELETE" })).status).toBe(401);
      expect((await fetch(`${guarded.url}/audit/verify`)).status).toBe(401);
      expect((await fetch(`${guarded.url}/audit/verify`, as(auditor))).status).toBe(200);
      expect((await fetch(`${guarded.url}/audit/export/csv`, as(auditor))).status).toBe(200);
      expect((await fetch(`${guarded.url}/audit/user/x`, { method: "DELETE", ...as(auditor) })).status).toBe(403);
      expect((await fetch(`${guarded.url}/audit/user/x`, { method: "DELETE", ...as(admin) })).status).toBe(200);
      await (await fetch(`${guarded.url}/audit/records`, as(auditor))).arrayBuffer();
      const events = await guardedTrail.query<{ kind: string; actor: string }>("SELECT kind, actor FROM audit_events ORDER BY seq");
      expect(events.map((e) => `${e.actor} ${e.kind}`)).toEqual([
        "api:auditor verify",
        "api:auditor export",
        "api:admin erasure",
        "api:auditor query",
      ]);
      expect(JSON.stringify(events)).not.toContain("token");
    } finally {
      await guarded.stop();
    }
  });

  test("GET /audit/export/ndjson streams the records; its signed manifest is then served by id", async () => {
    await call("exporter");
    await proxy.records();
    const today = new Date().toISOString().slice(0, 10);
    const response = await fetch(`${proxy.url}/audit/export/ndjson?start_date=${today}&end_date=${today}`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/x-ndjson");
    const id = response.headers.get("x-audit-export-id")!;
    const body = new Uint8Array(await response.arrayBuffer());
    const lines = new TextDecoder()
      .decode(body)
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { user_id: string | null });
    expect(lines.some((r) => r.user_id === "exporter")).toBe(true);
    expect(lines.some((r) => r.user_id === "erase-me")).toBe(false); // erased above
    const manifest = (await (await fetch(`${proxy.url}/audit/exports/${id}/manifest`)).json()) as ExportManifest;
    expect(manifest).toMatchObject({ export_id: id, record_count: lines.length, bytes: body.byteLength, format: "ndjson" });
    expect(manifest.sha256).toBe(new Bun.CryptoHasher("sha256").update(body).digest("hex"));
    expect(manifest.public_key).toBe(await (await fetch(`${proxy.url}/audit/pubkey`)).text());
  });

  test("GET /audit/export/json?tag.team=… exports only the records with that tag; a bad tag is a 400", async () => {
    await call("tagged", { "x-attr-tag-team": "exports" });
    await call("untagged");
    await proxy.records();
    const response = await fetch(`${proxy.url}/audit/export/json?tag.team=exports`);
    expect(response.status).toBe(200);
    const records = (await response.json()) as { user_id: string | null; tags: string | null }[];
    expect(records.map((r) => r.user_id)).toEqual(["tagged"]);
    expect(JSON.parse(records[0]!.tags!)).toEqual({ team: "exports" });
    expect((await fetch(`${proxy.url}/audit/export/csv?tag=no-equals-sign`)).status).toBe(400);
  });

  test("an unknown export format is a 404, a bad date a 400, an unknown manifest a 404", async () => {
    expect((await fetch(`${proxy.url}/audit/export/xml`)).status).toBe(404);
    const bad = await fetch(`${proxy.url}/audit/export/csv?start_date=yesterday`);
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain("start_date");
    expect((await fetch(`${proxy.url}/audit/exports/nope/manifest`)).status).toBe(404);
  });

  test("an export of a trail edited behind the proxy is a 409 naming the seq, with no manifest", async () => {
    const edited = await trailOn(driver, "edited", 5);
    await edited.tamper("UPDATE audit_records SET model = 'cheaper' WHERE seq = 3");
    const tampered = await proxyOn(edited, upstream.url);
    try {
      const response = await fetch(`${tampered.url}/audit/export/csv`);
      expect(response.status).toBe(409);
      const body = (await response.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("export_refused");
      expect(body.error.message).toContain("refused at seq 3");
      const [last] = await edited.query<{ details: string }>(
        "SELECT details FROM audit_events WHERE kind = 'export' ORDER BY seq DESC LIMIT 1",
      );
      expect(JSON.parse(last!.details)).toMatchObject({ refused: { seq: 3, reason: "edited" } });
    } finally {
      await tampered.stop();
    }
  });
});
