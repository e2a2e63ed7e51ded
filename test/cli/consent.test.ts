/**
 * `agent-attr consent grant|list|show|revoke` as a user runs it, against SQLite and PostgreSQL
 * (--log-db postgres://), with the audit commands' exit codes and JSON envelopes; then
 * `audit query --consent` and `audit summary --by purpose` over calls the proxy made under it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { cliOn, postgresDriver, proxyOn, sqliteDriver, type TestDriver } from "../helpers/drivers.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
let pg: PgSchema;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  pg = await pgSchema("consent_cli");
});
afterAll(async () => {
  await upstream.stop();
  await pg.drop();
});

const grantArgs = ["consent", "grant", "--user", "alice", "--agent", "code-review-*", "--purpose", "PR review"];

test.each([sqliteDriver, postgresDriver(() => pg)])(
  "on $name: grant prints an id; list, show and revoke read and withdraw it; the proxy's calls under it are queried and summarised",
  async (driver: TestDriver) => {
    const trail = await driver.open("lifecycle");
    await trail.store.close();
    const granted = await cliOn(trail, ...grantArgs, "--expires", "90d", "--basis", "contract");
    expect(granted.stderr).toContain("Granted:");
    expect(granted.exitCode).toBe(0);
    const id = granted.stdout.trim();
    expect(id).toMatch(/^cns_[0-9a-f]{16}$/);

    const listed = await cliOn(trail, "consent", "list", "--format", "json");
    expect(listed.exitCode).toBe(0);
    const { consents } = JSON.parse(listed.stdout) as { consents: { id: string; lawful_basis: string; expires_at: string }[] };
    expect(consents.map((c) => c.id)).toEqual([id]);
    expect(consents[0]!.lawful_basis).toBe("contract");
    expect(Date.parse(consents[0]!.expires_at) - Date.now()).toBeGreaterThan(89 * 86_400_000);

    const proxy = await proxyOn(trail, upstream.url, { consent: "enforce" });
    try {
      for (const user of ["alice", "alice", "bob"]) {
        const response = await fetch(`${proxy.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-agent-id": "code-review-bot", "x-user-id": user },
          body: JSON.stringify({ model: "gpt-4o", messages: [] }),
        });
        expect(response.status).toBe(user === "alice" ? 200 : 403);
        await response.arrayBuffer();
      }
      await proxy.records();
    } finally {
      await proxy.stop();
    }

    const query = await cliOn(trail, "audit", "query", "--consent", id, "--format", "json");
    expect(query.exitCode).toBe(0);
    const page = JSON.parse(query.stdout) as { records: { consent_id: string; purpose: string; lawful_basis: string }[] };
    expect(page.records).toHaveLength(2);
    expect(page.records.every((r) => r.consent_id === id && r.purpose === "PR review" && r.lawful_basis === "contract")).toBe(true);
    const summary = await cliOn(trail, "audit", "summary", "--by", "purpose", "--format", "json");
    expect(summary.exitCode).toBe(0);
    const groups = (JSON.parse(summary.stdout) as { groups: { key: string | null; calls: number }[] }).groups;
    expect(groups.find((g) => g.key === "PR review")?.calls).toBe(2);
    expect(groups.find((g) => g.key === null)?.calls).toBe(1); // bob's refused call: no consent

    const revoked = await cliOn(trail, "consent", "revoke", id);
    expect(revoked.exitCode).toBe(0);
    expect(revoked.stdout).toContain("Withdrawn");
    const shown = await cliOn(trail, "consent", "show", id, "--format", "json");
    expect(JSON.parse(shown.stdout)).toMatchObject({ id, status: "withdrawn", revoked_by: expect.stringMatching(/^cli/) });
    const verified = await cliOn(trail, "audit", "verify");
    expect(verified.exitCode).toBe(0);
  },
);

test("mistakes exit 2 naming the flag, a missing trail exits 4", async () => {
  const logDb = join(tempDir(), "audit.db");
  const basis = await runCli([...grantArgs, "--basis", "because", "--log-db", logDb]);
  expect(basis.exitCode).toBe(2);
  expect(basis.stderr).toContain("--basis");
  const agent = await runCli(["consent", "grant", "--user", "alice", "--agent", " ", "--purpose", "x", "--log-db", logDb]);
  expect(agent.exitCode).toBe(2);
  expect(agent.stderr).toContain("--agent");
  const expires = await runCli([...grantArgs, "--expires", "soon", "--log-db", logDb]);
  expect(expires.exitCode).toBe(2);
  const badId = await runCli(["consent", "show", "nope", "--log-db", logDb]);
  expect(badId.exitCode).toBe(2);
  const missing = await runCli(["consent", "list", "--log-db", join(tempDir(), "none.db")]);
  expect(missing.exitCode).toBe(4);
  expect(missing.stderr).toContain("No audit database");
  await runCli([...grantArgs, "--log-db", logDb]);
  const unknown = await runCli(["consent", "revoke", "cns_0000000000000000", "--log-db", logDb]);
  expect(unknown.exitCode).toBe(2);
  expect(unknown.stderr).toContain("consent list");
});

test("--log-db postgres:// grants into the shared store", async () => {
  const logDb = pg.logDb;
  const granted = await runCli([...grantArgs, "--task-pattern", "PR #*", "--log-db", logDb]);
  expect(granted.exitCode).toBe(0);
  const id = granted.stdout.trim();
  const listed = await runCli(["consent", "list", "--user", "alice", "--status", "active", "--log-db", logDb]);
  expect(listed.exitCode).toBe(0);
  expect(listed.stdout).toContain(id);
  expect(listed.stdout).toContain('tasks "PR #*"');
  const revoked = await runCli(["consent", "revoke", id, "--format", "json", "--log-db", logDb]);
  expect(JSON.parse(revoked.stdout)).toMatchObject({ id, status: "withdrawn" });
});
