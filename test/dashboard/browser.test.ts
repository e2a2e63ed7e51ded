// The dashboard in a real browser: Debian's Chromium (/usr/bin/chromium) driven by playwright-core,
// headless, with a fresh profile. On a seeded trail: the numbers shown equal the REST summary's,
// filters and pagination work, a tampered trail shows red at the right seq, an auditor cannot
// erase. Screenshots of each page go to screenshots/ (git-ignored).
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";
import { seededTrail } from "../helpers/seeded-trail.ts";

const executablePath = "/usr/bin/chromium";
const present = existsSync(executablePath);
// CI installs Chromium (.ci/run); elsewhere the tests say how to get it instead of failing.
if (!present && !process.env.CI) console.warn(`browser tests skipped: ${executablePath} is missing (apt-get install -y chromium)`);
const browserTest = test.skipIf(!present && !process.env.CI);

const admin = "admin-token-".padEnd(32, "a");
const auditor = "auditor-token-".padEnd(32, "b");
const shots = resolve(import.meta.dir, "../../screenshots");
let browser: Browser;
let upstream: FakeUpstream;
let proxy: TestProxy;

beforeAll(async () => {
  if (!present && !process.env.CI) return;
  mkdirSync(shots, { recursive: true });
  upstream = await startFakeUpstream();
  proxy = await startTestProxy(upstream.url, {}, { adminToken: admin, auditorToken: auditor, logDb: seededTrail(300) });
  browser = await chromium.launch({
    executablePath,
    headless: true,
    // launch() gives the browser a fresh temporary profile (user-data dir) of its own, removed on close.
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
  });
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await proxy?.stop();
  await upstream?.stop();
});

async function signedIn(token: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (error) => {
    throw error;
  });
  await page.goto(`${proxy.url}/dashboard`);
  await page.getByLabel("Admin or auditor token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForSelector('main[data-ready="true"]');
  return page;
}

async function open(page: Page, route: string): Promise<void> {
  await page.goto(`${proxy.url}/dashboard#/${route}`);
  await page.waitForSelector(`main[data-ready="true"]`);
}

const summary = async (query: string) =>
  (await (await fetch(`${proxy.url}/audit/summary?${query}`, { headers: { authorization: `Bearer ${auditor}` } })).json()) as {
    groups: { key: string | null; cost_nano_usd: number; calls: number }[];
    total: { calls: number; cost_nano_usd: number; input_tokens: number };
  };

browserTest(
  "Overview and Explore show the REST summary's numbers; Explore filters; the token is in no URL or storage",
  async () => {
    const page = await signedIn(auditor);
    await open(page, "overview");
    await page.getByLabel("Time range").selectOption("7");
    await page.waitForSelector('main[data-ready="true"] [data-testid="total-calls"]');
    const rest = await summary("by=agent&days=7");
    expect(await page.getByTestId("total-calls").textContent()).toBe(rest.total.calls.toLocaleString("en-US"));
    expect(await page.getByTestId("total-input").textContent()).toBe(rest.total.input_tokens.toLocaleString("en-US"));
    const topAgents = await page.locator('[data-testid="top-agent"] tbody tr td.key').allTextContents();
    expect(topAgents).toEqual(rest.groups.slice(0, 5).map((g) => g.key ?? "(none)"));
    const topCosts = await page
      .locator('[data-testid="top-agent"] tbody td[data-cost-nano]')
      .evaluateAll((cells) => cells.map((c) => Number(c.getAttribute("data-cost-nano"))));
    expect(topCosts).toEqual(rest.groups.slice(0, 5).map((g) => g.cost_nano_usd));
    expect(await page.getByTestId("total-refused").textContent()).toBe("120");
    await page.screenshot({ path: join(shots, "overview.png"), fullPage: true });

    await open(page, "explore");
    await page.getByLabel("Break down by").selectOption("model");
    await page.locator("#explore-agent").fill("agent-1");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.locator('main[data-ready="true"] [data-testid="explore-table"]').waitFor();
    const filtered = await summary("by=model&days=7&agent=agent-1");
    expect(Number(await page.getByTestId("explore-total-cost").getAttribute("data-cost-nano"))).toBe(filtered.total.cost_nano_usd);
    expect(await page.getByTestId("explore-total-calls").textContent()).toBe(String(filtered.total.calls));
    const download = page.waitForEvent("download");
    await page.getByRole("button", { name: "Download CSV" }).click();
    const csv = await Bun.file(await (await download).path()).text();
    expect(csv.split("\r\n")[0]).toStartWith("key,calls,input_tokens");
    expect(csv).toContain(`TOTAL,${filtered.total.calls},`);
    await page.screenshot({ path: join(shots, "explore.png"), fullPage: true });

    // Break down by a tag's values: the same groups as the REST summary by=tag:team.
    await page.getByLabel("Break down by").selectOption("tag");
    await page.locator("#explore-agent").fill("");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.locator('main[data-ready="true"] [data-testid="explore-table"]').waitFor();
    const byTeam = await summary("by=tag:team&days=7");
    const shownTeams = await page.locator('[data-testid="explore-table"] tbody td.key').allTextContents();
    expect(shownTeams.sort()).toEqual(byTeam.groups.map((g) => g.key ?? "(none)").sort());
    expect(shownTeams).toContain("platform");
    expect(await page.getByTestId("explore-total-calls").textContent()).toBe(String(byTeam.total.calls));

    const leaked = await page.evaluate(() => {
      // In the page (the test itself is not typed against the DOM).
      const w = globalThis as unknown as {
        location: { href: string };
        localStorage: object;
        sessionStorage: object;
        document: { cookie: string };
      };
      return JSON.stringify({
        url: w.location.href,
        local: { ...w.localStorage },
        session: { ...w.sessionStorage },
        cookie: w.document.cookie,
      });
    });
    expect(leaked).not.toContain(auditor);
    expect(leaked).not.toContain("agent_attr_session"); // HttpOnly: scripts cannot read it
    await page.context().close();
  },
  60_000,
);

browserTest(
  "Records: filters, cursor pagination, a record with its delegation chain and hashes, look-up by id",
  async () => {
    const page = await signedIn(auditor);
    await open(page, "records");
    const seqs = () => page.locator('[data-testid="records-table"] tbody tr td:first-child').allTextContents();
    const first = await seqs();
    expect(first).toHaveLength(50);
    expect(first[0]).toBe("300");
    await page.getByRole("button", { name: "Next page" }).click();
    await page.locator('main[data-ready="true"] [data-testid="page-number"]', { hasText: "Page 2" }).waitFor();
    expect((await seqs())[0]).toBe("250");
    await page.locator("#records-outcome").selectOption("rejected");
    await page.locator("#records-user").fill("user-4");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.locator('main[data-ready="true"] [data-testid="page-number"]', { hasText: "Page 1" }).waitFor();
    const rows = await page
      .locator('[data-testid="records-table"] tbody tr')
      .evaluateAll((trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((cells) => cells[3] === "user-4" && cells[6] === "rejected")).toBe(true);
    await page.screenshot({ path: join(shots, "records.png"), fullPage: true });

    await page.getByLabel("X-Audit-Record-ID").fill("0193aaaa-0000-7000-8000-000000000008");
    await page.getByRole("button", { name: "Open" }).click();
    await page.waitForSelector('main[data-ready="true"] [data-testid="record-hash"]');
    expect(await page.locator('[data-testid="delegation-chain"] li').allTextContents()).toEqual([
      "user user-8",
      "planner",
      "orchestrator",
      "agent-3",
    ]);
    const entry = (await (await fetch(`${proxy.url}/audit/chain/8`, { headers: { authorization: `Bearer ${auditor}` } })).json()) as {
      hash: string;
    };
    expect(await page.getByTestId("record-hash").textContent()).toBe(entry.hash);
    await page.screenshot({ path: join(shots, "record.png"), fullPage: true });
    await page.context().close();
  },
  60_000,
);

browserTest(
  "Trail and Limits: an auditor cannot erase; verify is green, then red at the tampered seq",
  async () => {
    const auditorPage = await signedIn(auditor);
    await open(auditorPage, "trail");
    expect(await auditorPage.getByTestId("erase-needs-admin").isVisible()).toBe(true);
    expect(await auditorPage.getByRole("button", { name: "Erase" }).count()).toBe(0);
    // Not even from the page's own script: the server holds the role.
    const status = await auditorPage.evaluate(
      async () => (await fetch("/audit/user/user-1", { method: "DELETE", headers: { "x-agent-attr-dashboard": "1" } })).status,
    );
    expect(status).toBe(403);
    await auditorPage.getByRole("button", { name: "Verify now" }).click();
    await auditorPage.waitForSelector('[data-testid="verify-status"][data-ok="true"]');
    // How far checkpoints vouch for it (none yet, or through some seq, as the proxy's checkpointer ran).
    expect(await auditorPage.getByTestId("signed-through").textContent()).toMatch(/^(Signed through seq \d|No signed checkpoint)/);
    await auditorPage.screenshot({ path: join(shots, "trail.png"), fullPage: true });
    await open(auditorPage, "limits");
    await auditorPage.waitForSelector('[data-testid="limits-empty"], [data-testid="limits-table"]');
    await auditorPage.waitForSelector('[data-testid="keys-table"]');
    await auditorPage.screenshot({ path: join(shots, "limits.png"), fullPage: true });
    await auditorPage.context().close();

    // Someone edits record 42 behind the proxy's back.
    const db = new Database(proxy.logDb);
    db.run("PRAGMA busy_timeout = 5000");
    db.run("UPDATE audit_records SET cost_nano_usd = 1 WHERE seq = 42");
    db.close();
    const adminPage = await signedIn(admin);
    await open(adminPage, "trail");
    await adminPage.getByRole("button", { name: "Verify now" }).click();
    const red = adminPage.locator('[data-testid="verify-status"][data-ok="false"]');
    await red.waitFor();
    expect(await red.getAttribute("data-bad-seq")).toBe("42");
    expect(await red.textContent()).toContain("edited");
    await adminPage.screenshot({ path: join(shots, "trail-tampered.png"), fullPage: true });
    await adminPage.context().close();
  },
  90_000,
);
