// Tags end to end on a running proxy: X-Attr-Tag-<Key> headers and a plugin's tags recorded
// (inside the hash chain), never sent upstream, bounded with a clear 400; a declared-personal tag
// erased with its user while verify still passes; filters and summaries by tag over REST.
import { afterAll, beforeAll, expect, test } from "bun:test";
import OpenAI from "openai";
import { definePlugin } from "../../src/plugin.ts";
import { headerAttribution, openai, sqliteAudit } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { runCli } from "../helpers/process.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
let proxy: TestProxy;

/** A plugin that tags every call with its deployment, and reads nothing from the client. */
const environment = definePlugin({ name: "environment", attribute: () => ({ tags: { env: "prod" } }) });

beforeAll(async () => {
  upstream = await startFakeUpstream();
  proxy = await startTestProxy(upstream.url, {
    plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), environment, sqliteAudit()],
    tags: { maxTags: 4, maxValueLength: 32, personal: ["email"] },
  });
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
});

const body = '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"n":9223372036854775807}';
const chat = (headers: Record<string, string>) =>
  fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });

async function recordOf(response: Response) {
  await response.arrayBuffer();
  const id = response.headers.get("x-audit-record-id")!;
  const all = await proxy.settled((await proxy.records()).length);
  return all.find((r) => r.id === id)!;
}

test("tag headers and a plugin's tags are recorded (keys lower-case, '_' as '-'), never sent upstream, the body untouched", async () => {
  const before = upstream.requests.length;
  const response = await chat({ "X-Agent-ID": "bot", "X-Attr-Tag-Team": "platform", "X-Attr-Tag-Cost_Center": "cc-42" });
  expect(response.status).toBe(200);
  const record = await recordOf(response);
  expect(JSON.parse(record.tags!)).toEqual({ "cost-center": "cc-42", env: "prod", team: "platform" });
  // Canonical: keys sorted, so equal tags are equal bytes in the hash.
  expect(record.tags).toBe('{"cost-center":"cc-42","env":"prod","team":"platform"}');
  expect(record.personal_tags).toBeNull();
  const seen = upstream.requests.slice(before);
  expect(seen).toHaveLength(1);
  expect(Object.keys(seen[0]!.headers).filter((name) => name.startsWith("x-attr-tag"))).toEqual([]);
  expect(seen[0]!.body).toBe(body);
});

test("the real SDK's default headers carry tags like any client's", async () => {
  const client = new OpenAI({
    apiKey: "sk-test",
    baseURL: `${proxy.url}/v1`,
    maxRetries: 0,
    defaultHeaders: { "X-Attr-Tag-Project": "atlas" },
  });
  const completion = await client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] });
  expect(completion.choices[0]!.message.content).toBe("Hello world");
  const records = await proxy.settled((await proxy.records()).length);
  expect(JSON.parse(records.at(-1)!.tags!)).toEqual({ env: "prod", project: "atlas" });
});

test("beyond the bounds a call is refused with 400 naming the tag, and the refusal is recorded", async () => {
  const tooMany = await chat({ "X-Attr-Tag-A": "1", "X-Attr-Tag-B": "2", "X-Attr-Tag-C": "3", "X-Attr-Tag-D": "4" });
  expect(tooMany.status).toBe(400);
  const error = ((await tooMany.clone().json()) as { error: { code: string; message: string } }).error;
  expect(error.code).toBe("invalid_attribution");
  expect(error.message).toContain("at most 4");
  const refused = await recordOf(tooMany);
  expect(refused).toMatchObject({ outcome: "rejected", status: 400 });

  const long = await chat({ "X-Attr-Tag-Team": "x".repeat(33) });
  expect(long.status).toBe(400);
  expect(await long.text()).toContain("The tag 'team' (an X-Attr-Tag-team header");

  const badKey = await chat({ "X-Attr-Tag-Te.am": "platform" });
  expect(badKey.status).toBe(400);
  expect(await badKey.text()).toContain("is not valid");

  // UTF-8 bytes as a client sends them; a zero-width space is refused like in any id.
  const invisible = await chat({ "X-Attr-Tag-Team": Buffer.from("plat\u200Bform").toString("latin1") });
  expect(invisible.status).toBe(400);
  const accented = await recordOf(await chat({ "X-Attr-Tag-Team": Buffer.from("équipe").toString("latin1") }));
  expect(JSON.parse(accented.tags!).team).toBe("équipe");
});

test("a declared-personal tag sits behind the commitment: erasing its user removes it, verify still passes", async () => {
  const response = await chat({ "X-User-ID": "alice", "X-Attr-Tag-Email": "alice@example.com", "X-Attr-Tag-Team": "platform" });
  const record = await recordOf(response);
  expect(record.personal_tags).toBe('{"email":"alice@example.com"}');
  expect(JSON.parse(record.tags!)).toEqual({ env: "prod", team: "platform" });
  const byEmail = await fetch(`${proxy.url}/audit/records?tag.email=alice@example.com`);
  expect(((await byEmail.json()) as { records: unknown[] }).records).toHaveLength(1);

  expect((await fetch(`${proxy.url}/audit/user/alice`, { method: "DELETE" })).status).toBe(200);
  const erased = (await proxy.records()).find((r) => r.id === record.id)!;
  expect(erased.personal_tags).toBeNull();
  expect(erased.user_id).toBeNull();
  expect(JSON.parse(erased.tags!)).toEqual({ env: "prod", team: "platform" });
  const after = await fetch(`${proxy.url}/audit/records?tag.email=alice@example.com`);
  expect(((await after.json()) as { records: unknown[] }).records).toHaveLength(0);
  const verified = (await (await fetch(`${proxy.url}/audit/verify`)).json()) as { ok: boolean; redacted: number };
  expect(verified).toMatchObject({ ok: true, redacted: 1 });
});

test("REST: records filtered by tag (tag.KEY=VALUE or tag=KEY=VALUE), summaries by tag:KEY", async () => {
  await recordOf(await chat({ "X-Attr-Tag-Team": "search" }));
  const page = (await (await fetch(`${proxy.url}/audit/records?tag.team=platform`)).json()) as { records: { tags: string }[] };
  expect(page.records.length).toBe(2);
  for (const r of page.records) expect(JSON.parse(r.tags).team).toBe("platform");
  const both = (await (await fetch(`${proxy.url}/audit/records?tag=team=platform&tag.cost-center=cc-42`)).json()) as {
    records: unknown[];
  };
  expect(both.records).toHaveLength(1);

  const summary = (await (await fetch(`${proxy.url}/audit/summary?by=tag:team`)).json()) as {
    by: string;
    groups: { key: string | null; calls: number }[];
  };
  expect(summary.by).toBe("tag:team");
  const calls = Object.fromEntries(summary.groups.map((g) => [g.key, g.calls]));
  expect(calls.platform).toBe(2);
  expect(calls["équipe"]).toBe(1);
  expect(calls.search).toBe(1);

  const bad = await fetch(`${proxy.url}/audit/summary?by=tag:no$pe`);
  expect(bad.status).toBe(400);
  const badFilter = await fetch(`${proxy.url}/audit/records?tag=team`);
  expect(badFilter.status).toBe(400);
});

test("CLI: audit query --tag (repeatable) and audit summary --by tag:KEY read the same trail", async () => {
  await proxy.records(); // everything committed
  const query = await runCli([
    "audit",
    "query",
    "--tag",
    "team=platform",
    "--tag",
    "cost-center=cc-42",
    "--format",
    "json",
    "--log-db",
    proxy.logDb,
  ]);
  expect(query.exitCode).toBe(0);
  const page = JSON.parse(query.stdout) as { records: { tags: string }[] };
  expect(page.records).toHaveLength(1);
  expect(JSON.parse(page.records[0]!.tags)).toMatchObject({ team: "platform", "cost-center": "cc-42" });
  const summary = await runCli(["audit", "summary", "--by", "tag:team", "--format", "json", "--log-db", proxy.logDb]);
  expect(summary.exitCode).toBe(0);
  const groups = (JSON.parse(summary.stdout) as { groups: { key: string | null; calls: number }[] }).groups;
  expect(groups.find((g) => g.key === "platform")?.calls).toBe(2);
  const bad = await runCli(["audit", "summary", "--by", "tag:", "--log-db", proxy.logDb]);
  expect(bad.exitCode).toBe(2);
  expect(bad.stderr).toContain("tag key");
});
