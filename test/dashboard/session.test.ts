// Dashboard sign-in and cross-site protection: the token is exchanged once for an HttpOnly,
// SameSite=Strict session cookie that works only with the dashboard's header; requests a browser
// sends for another site are refused; pages carry a strict CSP.
import { expect, test } from "bun:test";
import { proxyBeforeAll, startTestProxy } from "../helpers/proxy.ts";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";

const admin = "admin-token-".padEnd(32, "a");
const auditor = "auditor-token-".padEnd(32, "b");
const setup = proxyBeforeAll();
const dashboard = { "x-agent-attr-dashboard": "1" };

async function withTokens<T>(run: (url: string) => Promise<T>): Promise<T> {
  const upstream = await startFakeUpstream();
  const proxy = await startTestProxy(upstream.url, {}, { adminToken: admin, auditorToken: auditor });
  try {
    return await run(proxy.url);
  } finally {
    await proxy.stop();
    await upstream.stop();
  }
}

const signIn = (url: string, token: string) =>
  fetch(`${url}/dashboard/session`, {
    method: "POST",
    headers: { ...dashboard, "content-type": "application/json" },
    body: JSON.stringify({ token }),
  });

test("sign-in sets an HttpOnly SameSite=Strict cookie; the cookie reads the API only with the dashboard header; sign-out ends it", async () => {
  await withTokens(async (url) => {
    const wrong = await signIn(url, "not-a-token-of-this-proxy");
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("set-cookie")).toBeNull();
    const answer = await signIn(url, auditor);
    expect(answer.status).toBe(200);
    expect(await answer.json()).toEqual({ role: "auditor" });
    const cookie = answer.headers.get("set-cookie")!;
    expect(cookie).toMatch(/^agent_attr_session=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/; Max-Age=28800$/);
    expect(cookie).not.toContain(auditor);
    const session = cookie.split(";")[0]!;
    const records = (headers: Record<string, string>) => fetch(`${url}/audit/records`, { headers: { cookie: session, ...headers } });
    expect((await records(dashboard)).status).toBe(200);
    expect((await records({})).status).toBe(403); // a cookie alone, as a cross-site form would send it
    // The role is the token's: an auditor session cannot erase.
    const erase = await fetch(`${url}/audit/user/alice`, { method: "DELETE", headers: { cookie: session, ...dashboard } });
    expect(erase.status).toBe(403);
    expect(((await erase.json()) as { error: { message: string } }).error.message).toContain("needs the admin role");
    const who = await fetch(`${url}/dashboard/session`, { headers: { cookie: session, ...dashboard } });
    expect(await who.json()).toEqual({ sign_in: "required", role: "auditor" });
    const out = await fetch(`${url}/dashboard/session`, { method: "DELETE", headers: { cookie: session, ...dashboard } });
    expect(out.headers.get("set-cookie")).toContain("Max-Age=0");
    expect((await records(dashboard)).status).toBe(401);
    // Every refusal and the admin sign-in's actions are chain events; no event holds a token.
    const adminSession = (await signIn(url, admin)).headers.get("set-cookie")!.split(";")[0]!;
    const events = (await (await fetch(`${url}/audit/events?limit=100`, { headers: { cookie: adminSession, ...dashboard } })).json()) as {
      events: { actor: string }[];
    };
    expect(events.events.some((e) => e.actor === "dashboard:auditor")).toBe(true);
    expect(JSON.stringify(events)).not.toContain(auditor);
    expect(JSON.stringify(events)).not.toContain(admin);
  });
});

test("a sign-in body larger than a token needs is refused with 413 before it is read (declared or chunked)", async () => {
  await withTokens(async (url) => {
    const big = JSON.stringify({ token: "x".repeat(1024 * 1024) });
    const declared = await fetch(`${url}/dashboard/session`, {
      method: "POST",
      headers: { ...dashboard, "content-type": "application/json" },
      body: big,
    });
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as { error: { code: string } }).error.code).toBe("body_too_large");
    const bytes = new TextEncoder().encode(big);
    const chunked = await fetch(`${url}/dashboard/session`, {
      method: "POST",
      headers: { ...dashboard, "content-type": "application/json" },
      body: new ReadableStream({
        start(controller) {
          for (let at = 0; at < bytes.length; at += 64 * 1024) controller.enqueue(bytes.subarray(at, at + 64 * 1024));
          controller.close();
        },
      }),
    });
    expect(chunked.status).toBe(413);
    // A token still signs in.
    expect((await signIn(url, admin)).status).toBe(200);
  });
});

test("sign-in needs the dashboard header; without tokens there is no sign-in", async () => {
  await withTokens(async (url) => {
    const bare = await fetch(`${url}/dashboard/session`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: admin }),
    });
    expect(bare.status).toBe(403);
  });
  expect(await (await fetch(`${setup.proxy.url}/dashboard/session`)).json()).toEqual({ sign_in: "none", role: "admin" });
});

test("requests a browser sends for another site are refused; programs without browser headers are not affected", async () => {
  const url = setup.proxy.url;
  const del = (headers: Record<string, string>) => fetch(`${url}/audit/user/alice`, { method: "DELETE", headers });
  expect((await del({ origin: "https://evil.example" })).status).toBe(403);
  expect((await del({ origin: "null" })).status).toBe(403);
  expect((await fetch(`${url}/audit/verify`, { headers: { "sec-fetch-site": "cross-site" } })).status).toBe(403);
  expect((await fetch(`${url}/audit/records`, { headers: { "sec-fetch-site": "same-site" } })).status).toBe(403);
  // DNS rebinding: a tokenless server answers only to loopback names.
  const rebound = await fetch(`${url}/audit/records`, { headers: { host: "attacker.example:8080" } });
  expect(rebound.status).toBe(403);
  expect(((await rebound.json()) as { error: { message: string } }).error.message).toContain("loopback");
  // The dashboard's own requests, and curl-like ones, pass.
  expect((await fetch(`${url}/audit/records`, { headers: { origin: url, "sec-fetch-site": "same-origin", ...dashboard } })).status).toBe(
    200,
  );
  expect((await del({})).status).toBe(200);
  // Proxied calls are not affected by any of it.
  const proxied = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", origin: "https://elsewhere.example" },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });
  expect(proxied.status).toBe(200);
});

test("the page and its assets are served with a strict Content-Security-Policy, no inline script", async () => {
  const page = await fetch(`${setup.proxy.url}/dashboard`);
  expect(page.status).toBe(200);
  const csp = page.headers.get("content-security-policy")!;
  expect(csp).toContain("script-src 'self'");
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).not.toContain("unsafe-inline");
  expect(page.headers.get("x-content-type-options")).toBe("nosniff");
  const html = await page.text();
  expect(html).toContain('<script type="module" src="/dashboard/app.js"></script>');
  expect(html).not.toMatch(/<script>|<script(?![^>]*src=)[^>]*>/);
  expect(html).not.toMatch(/ on[a-z]+=|style=/);
  const js = await fetch(`${setup.proxy.url}/dashboard/app.js`);
  expect(js.headers.get("content-type")).toContain("javascript");
  expect((await js.text()).length).toBeGreaterThan(10_000);
  expect((await fetch(`${setup.proxy.url}/dashboard/app.css`)).headers.get("content-type")).toContain("text/css");
}, 30_000);

test("dashboard.enabled: false serves no page, script or sign-in (404), and the audit API still answers", async () => {
  const upstream = await startFakeUpstream();
  const proxy = await startTestProxy(upstream.url, { dashboard: { enabled: false } }, { adminToken: admin });
  try {
    for (const path of ["/dashboard", "/dashboard/", "/dashboard/app.js", "/dashboard/session"]) {
      expect((await fetch(`${proxy.url}${path}`)).status).toBe(404);
    }
    expect((await signIn(proxy.url, admin)).status).toBe(404);
    const api = await fetch(`${proxy.url}/audit/summary?by=agent`, { headers: { authorization: `Bearer ${admin}` } });
    expect(api.status).toBe(200);
  } finally {
    await proxy.stop();
    await upstream.stop();
  }
});
