// Erasure finds a person however their id reached the record, on both drivers: a UTF-8 header, a
// body user in either normal form, a record an older version stored as mojibake or in NFD, a Claude
// Code metadata blob an older version stored whole. The id given to erase may be NFC or NFD.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { AuditRecord } from "../../src/trail/record.ts";
import type { VerifyReport } from "../../src/trail/verify.ts";
import { cliOn, postgresDriver, proxyOn, sqliteDriver, type OpenedTrail, type TestDriver } from "../helpers/drivers.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import type { TestProxy } from "../helpers/proxy.ts";
import { sampleRecord } from "../helpers/records.ts";

let pg: PgSchema;
let upstream: FakeUpstream;
beforeAll(async () => {
  pg = await pgSchema("erase_identity");
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
  await pg.drop();
});
const utf8 = (text: string) => Buffer.from(text, "utf8").toString("latin1");
const nfc = "jos\u00e9";
const nfd = "jose\u0301";

describe.each([sqliteDriver, postgresDriver(() => pg)])("erasure by identity on $name", (driver: TestDriver) => {
  let trail: OpenedTrail;
  let proxy: TestProxy;
  beforeAll(async () => {
    trail = await driver.open("identity");
    proxy = await proxyOn(trail, upstream.url);
  });
  afterAll(async () => {
    await proxy.stop();
  });

  async function call(headers: Record<string, string>, extra: Record<string, unknown> = {}) {
    const response = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-agent-id": "bot", ...headers },
      body: JSON.stringify({ model: "gpt-4o", messages: [], ...extra }),
    });
    await response.arrayBuffer();
    expect(response.status).toBe(200);
  }

  /** A record as an older version of the proxy wrote it, straight into the primary store. */
  async function legacyRecord(i: number, overrides: Partial<AuditRecord>) {
    await proxy.runtime.store.commit(sampleRecord(1000 + i, { timestamp: new Date().toISOString(), ...overrides }));
  }

  const allRecords = async () => (await (await fetch(`${proxy.url}/audit/records?limit=1000`)).json()) as { records: AuditRecord[] };

  test("DELETE /audit/user/:id with the NFD form erases the NFC records, the NFD ones and the mojibake of older versions", async () => {
    await call({ "x-user-id": utf8(nfc), "x-task-context": utf8("josé's task") }); // UTF-8 headers
    await call({}, { user: nfd }); // a body user, decomposed
    await legacyRecord(1, { user_id: "jos\u00c3\u00a9", task_context: "stored as mojibake" }); // the header's bytes read as Latin-1
    await legacyRecord(2, { user_id: nfd, task_context: "stored in NFD" }); // a body user before NFC
    await legacyRecord(3, { user_id: null, key_id: "jos\u00c3\u00a9" });
    await call({ "x-user-id": "jose" }); // another person: no accent
    await proxy.records();
    const before = (await allRecords()).records;
    expect(before.filter((r) => r.user_id === nfc)).toHaveLength(2);

    const erased = await fetch(`${proxy.url}/audit/user/${encodeURIComponent(nfd)}`, { method: "DELETE" });
    expect(erased.status).toBe(200);

    const after = (await allRecords()).records;
    const text = JSON.stringify(after);
    for (const form of [nfc, nfd, "jos\u00c3\u00a9", "josé's task", "stored as mojibake", "stored in NFD"])
      expect(text).not.toContain(form);
    expect(after.filter((r) => r.user_id === "jose")).toHaveLength(1);
    const byUser = (await (await fetch(`${proxy.url}/audit/user/${encodeURIComponent(nfc)}`)).json()) as { records: unknown[] };
    expect(byUser.records).toEqual([]);
    const report = (await (await fetch(`${proxy.url}/audit/verify`)).json()) as VerifyReport;
    expect(report).toMatchObject({ ok: true, redacted: 5 });
  });

  test("queries, exports and audit delete --user (CLI) take the NFD form and find the NFC records", async () => {
    await call({ "x-user-id": utf8("Zoë") });
    await call({}, { user: "Zoe\u0308" });
    await proxy.records();
    expect((await allRecords()).records.filter((r) => r.user_id === "Zo\u00eb")).toHaveLength(2);
    // Queries and exports take the id in either form too.
    const query = (await (await fetch(`${proxy.url}/audit/user/${encodeURIComponent("Zoe\u0308")}`)).json()) as { records: unknown[] };
    expect(query.records).toHaveLength(2);
    const exported = await (await fetch(`${proxy.url}/audit/export/ndjson?user=${encodeURIComponent("Zoe\u0308")}`)).text();
    expect(exported.trim().split("\n")).toHaveLength(2);
    const cli = await cliOn(trail, "audit", "delete", "--user", "Zoe\u0308");
    expect(cli.stderr).toBe("");
    expect(cli.exitCode).toBe(0);
    expect(JSON.stringify((await allRecords()).records)).not.toContain("Zo\u00eb");
  });

  test("records of Claude Code calls stored whole by older versions are erased by the device or account id", async () => {
    const device = "5dd07c33da27e6d2968d94ea20bf47a7b090b6b158b82328d54da2909a108e84";
    const account = "0d6c7c43-6f3e-4a55-9d1a-4c1b2f0e9a77";
    const session = "d2e70091-3007-41a3-a916-cb8b0d3098de";
    await legacyRecord(10, { user_id: JSON.stringify({ device_id: device, account_uuid: "", session_id: session }) });
    await legacyRecord(11, { user_id: `user_${device}_account__session_${session}` });
    await legacyRecord(12, { user_id: JSON.stringify({ device_id: "f".repeat(64), account_uuid: account, session_id: session }) });
    await legacyRecord(13, { user_id: `user_${"e".repeat(64)}_account_${account}_session_${session}` });
    // A user whose id merely contains the device id is someone else.
    await legacyRecord(14, { user_id: `not-${device}` });
    await proxy.records();

    for (const id of [device, account]) {
      expect((await fetch(`${proxy.url}/audit/user/${id}`, { method: "DELETE" })).status).toBe(200);
    }
    const after = JSON.stringify((await allRecords()).records);
    expect(after).not.toContain(session);
    expect(after).toContain(`not-${device}`);
    expect(((await (await fetch(`${proxy.url}/audit/verify`)).json()) as VerifyReport).ok).toBe(true);
  });

  test("a call in flight when its user is erased in another normal form is redacted as it lands", async () => {
    const store = proxy.runtime.store;
    const started = sampleRecord(2000, { user_id: "Ren\u00e9e", outcome: null, timestamp: new Date().toISOString() });
    await store.begin(started);
    expect((await fetch(`${proxy.url}/audit/user/${encodeURIComponent("Rene\u0301e")}`, { method: "DELETE" })).status).toBe(200);
    await store.commit({ ...started, outcome: "completed" });
    await proxy.records();
    const landed = (await allRecords()).records.find((r) => r.id === started.id);
    expect(landed).toMatchObject({ user_id: null, outcome: "completed" });
  });
});
