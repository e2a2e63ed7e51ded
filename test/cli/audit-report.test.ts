/**
 * `agent-attr audit report`: a period of real calls (granted, refused, withdrawn, erased) as a
 * signed, self-contained HTML file, opened in real Chromium (no request leaves the page, the
 * charts and tables are there, no user is named), its signature checked with openssl and with
 * `audit verify-report`, and a changed byte caught — read from either driver.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium, type Browser } from "playwright-core";
import { reportSchema } from "../../src/trail/report.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { cliOn, postgresDriver, proxyOn, sqliteDriver, type OpenedTrail, type TestDriver } from "../helpers/drivers.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";

const executablePath = "/usr/bin/chromium";
const present = existsSync(executablePath);
if (!present && !process.env.CI) console.warn(`browser tests skipped: ${executablePath} is missing (apt-get install -y chromium)`);
const browserTest = test.skipIf(!present && !process.env.CI);

const adminToken = "report-admin-token-0123456789";
const since = new Date(Date.now() - 86_400_000).toISOString();
let upstream: FakeUpstream;
let pg: PgSchema;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  pg = await pgSchema("report");
});
afterAll(async () => {
  await upstream.stop();
  await pg.drop();
});

describe.each([sqliteDriver, postgresDriver(() => pg)])("audit report on $name", (driver: TestDriver) => {
  const dir = tempDir();
  let trail: OpenedTrail;
  let consentId = "";
  beforeAll(async () => {
    trail = await driver.open("report");
    const proxy = await proxyOn(trail, upstream.url, { consent: "enforce" }, { adminToken });
    try {
      const api = (path: string, init: RequestInit = {}) =>
        fetch(`${proxy.url}${path}`, { ...init, headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" } });
      const granted = await api("/audit/consents", {
        method: "POST",
        body: JSON.stringify({ user: "alice", agents: ["code-review-*"], purpose: "PR review <b>&</b>", lawful_basis: "contract" }),
      });
      consentId = ((await granted.json()) as { id: string }).id;
      const other = await api("/audit/consents", {
        method: "POST",
        body: JSON.stringify({ user: "bob", agents: ["*"], purpose: "support triage" }),
      });
      const otherId = ((await other.json()) as { id: string }).id;
      const call = (user: string, agent: string) =>
        fetch(`${proxy.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-agent-id": agent, "x-user-id": user },
          body: JSON.stringify({ model: "gpt-4o", messages: [] }),
        }).then((r) => r.arrayBuffer());
      for (let i = 0; i < 3; i++) await call("alice", "code-review-bot");
      await call("bob", "helpdesk");
      await call("carol", "code-review-bot"); // refused: no consent
      await api(`/audit/consents/${otherId}`, { method: "DELETE" });
      await call("bob", "helpdesk"); // refused: withdrawn
      await api("/audit/user/bob", { method: "DELETE" });
      await proxy.records();
    } finally {
      await proxy.stop();
    }
  });
  test("the HTML report is signed: openssl and verify-report accept it, a changed byte is caught", async () => {
    const output = join(dir, "report.html");
    const made = await cliOn(trail, "audit", "report", "--since", since, "--format", "html", "--output", output);
    expect(made.stderr).toContain("Wrote");
    expect(made.exitCode).toBe(0);
    const pub = await cliOn(trail, "audit", "pubkey");
    const pem = join(dir, "trail.pub.pem");
    writeFileSync(pem, pub.stdout);
    const openssl = Bun.spawnSync([
      "openssl",
      "pkeyutl",
      "-verify",
      "-pubin",
      "-inkey",
      pem,
      "-rawin",
      "-in",
      output,
      "-sigfile",
      `${output}.sig`,
    ]);
    expect(openssl.stdout.toString()).toContain("Signature Verified Successfully");
    expect((await runCli(["audit", "verify-report", output, "--public-key", pem])).exitCode).toBe(0);

    const html = readFileSync(output, "utf8");
    expect(html).not.toContain("alice");
    expect(html).not.toContain("bob");
    expect(html).not.toContain("<b>&</b>"); // the purpose is escaped
    const changed = join(dir, "changed.html");
    writeFileSync(changed, html.replace("Calls by purpose", "Calls by purposE"));
    writeFileSync(`${changed}.sig`, readFileSync(`${output}.sig`));
    const caught = await runCli(["audit", "verify-report", changed, "--public-key", pem]);
    expect(caught.exitCode).toBe(1);
    expect(caught.stdout).toContain("does NOT match");
  });

  test("--format json writes the report's data, signed the same way", async () => {
    const output = join(dir, "report.json");
    const made = await cliOn(trail, "audit", "report", "--since", since, "--format", "json", "--output", output);
    expect(made.exitCode).toBe(0);
    const data = reportSchema.parse(JSON.parse(readFileSync(output, "utf8")));
    expect(data.totals.calls).toBe(6);
    expect(data.by_purpose.find((row) => row.key === "PR review <b>&</b>")?.calls).toBe(3);
    expect(data.by_basis.find((row) => row.key === "contract")?.calls).toBe(3);
    expect(data.refusals.by_error.find((row) => row.key === "consent_required")?.calls).toBe(2);
    expect(data.consents.granted).toHaveLength(2);
    expect(data.consents.withdrawn).toHaveLength(1);
    // bob's two calls: the one recorded, and the refused one still landing when he was erased.
    expect(data.erasures).toEqual({ events: 1, records: 2 });
    expect(data.verify.ok).toBe(true);
    expect(data.status.last_checkpoint).not.toBeNull();
    const bad = await cliOn(trail, "audit", "report", "--since", "yesterday", "--output", output);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain("--since");
  });

  let browser: Browser | undefined;
  afterAll(async () => {
    await browser?.close();
  });

  // One browser run is enough: the report is the same HTML whichever driver it was read from.
  if (driver.name === "sqlite") {
    browserTest("Chromium shows the report offline: charts, tables, integrity, and not one request beyond the file", async () => {
      const output = join(dir, "browser.html");
      expect((await cliOn(trail, "audit", "report", "--since", since, "--output", output)).exitCode).toBe(0);
      browser = await chromium.launch({
        executablePath,
        args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
      });
      const page = await browser.newPage();
      const requests: string[] = [];
      const problems: string[] = [];
      page.on("request", (request) => requests.push(request.url()));
      page.on("console", (message) => message.type() === "error" && problems.push(message.text()));
      page.on("pageerror", (error) => problems.push(error.message));
      const url = pathToFileURL(output).href;
      await page.goto(url);
      expect(await page.title()).toContain("agent-attr audit report");
      expect(requests).toEqual([url]);
      expect(problems).toEqual([]);
      expect(await page.locator("#totals .card").first().innerText()).toContain("6");
      expect(await page.locator("#integrity").innerText()).toContain("Intact");
      expect(await page.locator("#integrity").innerText()).toMatch(/Last signed checkpoint: seq \d+/);
      // "PR review…", "support triage" (bob's call before he was erased keeps its purpose), "(no consent)".
      expect(await page.locator("#by-purpose svg rect").count()).toBe(3);
      expect(await page.locator("#by-purpose svg").innerHTML()).toContain("PR review &lt;b&gt;&amp;&lt;/b&gt;");
      expect(await page.locator("#calls-by-day svg rect.day").count()).toBeGreaterThanOrEqual(1);
      expect(await page.locator("#by-basis").innerText()).toContain("contract");
      expect(await page.locator("#refusals").innerText()).toContain("consent_required");
      expect(await page.locator("#consents").innerText()).toContain(consentId);
      expect(await page.locator("#consents tbody tr").count()).toBe(3);
      expect(await page.locator("#consents tbody tr").last().innerText()).toContain("support triage"); // the withdrawal says what it withdrew
      expect(await page.locator("#erasures").innerText()).toContain("1 erasure(s)");
      // The charts are laid out (not zero-sized) in a real browser.
      const box = await page.locator("#by-agent svg").boundingBox();
      expect(box?.width).toBeGreaterThan(300);
      expect(box?.height).toBeGreaterThan(20);
    });
  }
});
