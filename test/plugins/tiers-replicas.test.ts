// Three proxy processes (each with its own SQLite trail) on one Redis, calls spread round-robin:
// a limit is one limit however many replicas serve it; a replica killed with -9 gives its budget
// reservations back when its lease lapses. Then a Redis of the test's own killed
// mid-load and restarted: 503 limits_unavailable while it is down (or calls through, flagged,
// with failOpen), and the same processes enforce limits again once it is back.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { reservationOf } from "../../plugins/tiers/reserve.ts";
import type { AuditRecord, CallContext } from "../../src/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { spawnProxy, type ProxyProcess } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";
import { dropPrefix, sharedRedisURL, startPrivateRedis, uniquePrefix, type PrivateRedis } from "../helpers/redis.ts";

let upstream: FakeUpstream;
const running: ProxyProcess[] = [];
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  for (const proxy of running) {
    proxy.child.kill();
    await proxy.child.exited;
  }
  await upstream.stop();
});

/** A replica: its own directory, SQLite trail and config (tiers on the given Redis store). */
async function replica(store: { url: string; prefix: string; failOpen?: boolean; leaseMs?: number }): Promise<ProxyProcess> {
  const dir = tempDir();
  const config = join(dir, "agent-attr.config.ts");
  writeFileSync(
    config,
    `import { defineConfig } from "agent-attr";
import { headerAttribution, openai, pricing, redisLimiterStore, sqliteAudit, tiers } from "agent-attr/plugins";
export default defineConfig({
  plugins: [
    openai(),
    headerAttribution(),
    pricing({ models: { "gpt-budget": { input: 10, output: 100 } }, catalog: false }),
    tiers({
      tiers: {
        rpm: { requestsPerMinute: 30, per: ["user"] },
        tpm: { tokensPerMinute: ${tpmLimit}, per: ["user"] },
        budget: { costPerDay: 1, per: ["user"] },
      },
      default: "rpm",
      assign: [{ user: "tpm-*", tier: "tpm" }, { user: "budget-*", tier: "budget" }],
      store: redisLimiterStore(${JSON.stringify(store)}),
    }),
    sqliteAudit(),
  ],
});
`,
  );
  const proxy = await spawnProxy(["--log-db", join(dir, "audit.db"), "--config", config], {
    cwd: dir,
    env: { AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1` },
  });
  running.push(proxy);
  return proxy;
}

const post = (proxy: ProxyProcess, user: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-user-id": user, ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  }).then(async (response) => ({ status: response.status, text: await response.text() }));

/** Each replica's records of `user` (its own trail), once `count` of them have a final outcome. */
async function recordsOf(proxies: ProxyProcess[], user: string, count: number): Promise<AuditRecord[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const pages = await Promise.all(
      proxies.map((p) =>
        fetch(`${p.url}/audit/records?user=${encodeURIComponent(user)}&limit=1000`).then(
          (r) => r.json() as Promise<{ records: AuditRecord[] }>,
        ),
      ),
    );
    const records = pages.flatMap((page) => page.records).filter((r) => r.outcome !== null);
    if (records.length >= count || Date.now() > deadline) return records;
    await Bun.sleep(50);
  }
}

/** The token estimate of the calls the tpm test sends; the limit admits exactly ten of them. */
const tpmBody = { model: "gpt-4o", max_tokens: 100, stream: true, messages: [] };
const tpmEstimate = reservationOf(
  {
    body: tpmBody,
    rawBody: null,
    endpoint: { kind: "chat.completions", wire: "openai", path: "/v1/chat/completions", method: "POST", billed: true },
  } as unknown as CallContext,
  4096,
).tokens;
const tpmLimit = 10 * tpmEstimate;

describe("three replicas on one Redis, calls round-robin", () => {
  const prefix = uniquePrefix("replicas");
  const proxies: ProxyProcess[] = [];
  beforeAll(async () => {
    for (let i = 0; i < 3; i++) proxies.push(await replica({ url: sharedRedisURL, prefix }));
    // Each replica connects and loads the scripts on its first call.
    for (const proxy of proxies)
      expect((await post(proxy, `warm-${Bun.randomUUIDv7()}`, { model: "gpt-4o", messages: [] })).status).toBe(200);
  }, 30_000);
  afterAll(async () => {
    await dropPrefix(prefix);
  });

  test("a limit of 30 requests per minute admits exactly 30 in total", async () => {
    const user = `rpm-${Bun.randomUUIDv7()}`;
    const started = performance.now();
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => post(proxies[i % 3]!, user, { model: "gpt-4o", messages: [] })));
    const elapsed = performance.now() - started;
    const admitted = results.filter((r) => r.status === 200).length;
    expect(results.filter((r) => r.status !== 200).map((r) => r.status)).toEqual(Array(60 - admitted).fill(429));
    // GCRA lets one more through every 2 s: exactly 30 when the burst fits in 2 s (it does, unless
    // the machine is starved), never more than the limit plus what refilled meanwhile.
    if (elapsed < 2_000) expect(admitted).toBe(30);
    else expect(admitted).toBeLessThanOrEqual(30 + Math.floor(elapsed / 2_000));
    expect(admitted).toBeGreaterThanOrEqual(30);
    // The three trails together hold exactly the admitted calls.
    const served = await recordsOf(proxies, user, 60);
    expect(new Set(served.filter((r) => r.outcome === "completed").map((r) => r.id)).size).toBe(admitted);
  }, 30_000);

  test("a tokens-per-minute limit of ten calls' estimates admits exactly ten", async () => {
    const user = `tpm-${Bun.randomUUIDv7()}`;
    // Real usage equals the estimate, so settling frees nothing; one estimate refills every 6 s.
    const usage = JSON.stringify({ prompt_tokens: tpmEstimate - 100, completion_tokens: 100, total_tokens: tpmEstimate });
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => post(proxies[i % 3]!, user, tpmBody, { "x-fake-usage": usage, "x-fake-scenario": "gap:500" })),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(10);
    expect(results.filter((r) => r.status === 429)).toHaveLength(20);
    const records = await recordsOf(proxies, user, 30);
    expect(records.filter((r) => r.outcome === "completed").reduce((sum, r) => sum + r.input_tokens! + r.output_tokens!, 0)).toBe(tpmLimit);
  }, 30_000);

  test("30 concurrent calls against a $1 budget spend at most $1 (real cost within each call's ceiling)", async () => {
    const user = `budget-${Bun.randomUUIDv7()}`;
    // Ceiling ≈ 1,000 output × $100/M = $0.10 (+ input at $10/M): 9 fit in $1. Each really costs
    // $0.10008, under its ceiling, so the single-process guarantee is: never past $1.
    const usage = JSON.stringify({ prompt_tokens: 8, completion_tokens: 1000, total_tokens: 1008 });
    const body = { model: "gpt-budget", max_tokens: 1000, stream: true, messages: [{ role: "user", content: "an essay" }] };
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => post(proxies[i % 3]!, user, body, { "x-fake-usage": usage, "x-fake-scenario": "gap:500" })),
    );
    const admitted = results.filter((r) => r.status === 200).length;
    expect(admitted).toBe(9); // a store per process would admit 9 on each replica: 27, $2.70
    expect(results.filter((r) => r.status !== 200).every((r) => r.status === 429 || r.status === 402)).toBe(true);
    const records = await recordsOf(proxies, user, 30);
    const spent = records.filter((r) => r.outcome === "completed").reduce((sum, r) => sum + r.cost_nano_usd!, 0);
    expect(spent).toBe(admitted * (8 * 10_000 + 1000 * 100_000));
    expect(spent).toBeLessThanOrEqual(1e9);
  }, 30_000);
});

test("kill -9 of a replica holding a budget: the others get it back once its lease lapses", async () => {
  const prefix = uniquePrefix("killed-replica");
  const [doomed, survivor] = [
    await replica({ url: sharedRedisURL, prefix, leaseMs: 1_500 }),
    await replica({ url: sharedRedisURL, prefix, leaseMs: 1_500 }),
  ];
  const user = `budget-${Bun.randomUUIDv7()}`;
  const call = (proxy: ProxyProcess, maxTokens: number, scenario = "") =>
    fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-user-id": user, "x-fake-scenario": scenario },
      body: JSON.stringify({ model: "gpt-budget", max_tokens: maxTokens, stream: true, messages: [] }),
    });
  // $0.90 of the $1 budget reserved by a long stream on the doomed replica.
  const held = await call(doomed, 9_000, "gap:30000");
  expect(held.status).toBe(200);
  const busy = await call(survivor, 5_000);
  expect(busy.status).toBe(429);
  expect(await busy.text()).toContain("Limit busy");
  doomed.child.kill("SIGKILL");
  await doomed.child.exited;
  await held.text().catch(() => "");
  // Within the lease (1.5 s, README: at most leaseMs after its last renewal) the $0.90 stops counting.
  let status = 429;
  let calls = 1;
  const deadline = Date.now() + 10_000;
  while (status !== 200 && Date.now() < deadline) {
    await Bun.sleep(200);
    const response = await call(survivor, 5_000);
    calls++;
    status = response.status;
    await response.text();
  }
  expect(status).toBe(200);
  await recordsOf([survivor], user, calls); // settled, so its last adjustment is in before the keys go
  await dropPrefix(prefix);
}, 30_000);

describe("Redis killed mid-load, then restarted", () => {
  let redis: PrivateRedis;
  afterAll(async () => {
    await redis?.kill();
  });

  test("fail closed: 503 limits_unavailable while down; fail open: 200, flagged; both enforce again once it is back", async () => {
    redis = await startPrivateRedis();
    const prefix = uniquePrefix("outage");
    const closed = await replica({ url: redis.url, prefix });
    const open = await replica({ url: redis.url, prefix, failOpen: true });
    // Each call is labelled with the phase it started and ended in; one that spans two is left out.
    let phase: "before" | "down" | "after" | "changing" = "before";
    const seen: { proxy: "closed" | "open"; phase: string; status: number; code: string | null }[] = [];
    let stop = false;
    const load = async (proxy: ProxyProcess, name: "closed" | "open") => {
      for (let i = 0; !stop; i++) {
        const at = phase;
        const result = await post(proxy, `load-${name}-${i}`, { model: "gpt-4o", messages: [] });
        const code = result.status === 200 ? null : (JSON.parse(result.text) as { error: { code: string } }).error.code;
        seen.push({ proxy: name, phase: at === phase ? at : "changing", status: result.status, code });
        await Bun.sleep(10);
      }
    };
    const loads = [load(closed, "closed"), load(open, "open")];
    await Bun.sleep(300);
    phase = "changing";
    await redis.kill();
    phase = "down";
    await Bun.sleep(700);
    phase = "changing";
    await redis.start();
    phase = "after";
    // Recovery without restarting anything: the fail-closed replica admits calls again.
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !seen.some((s) => s.proxy === "closed" && s.phase === "after" && s.status === 200)) await Bun.sleep(50);
    await Bun.sleep(200);
    stop = true;
    await Promise.all(loads);

    const of = (proxy: string, at: string) => seen.filter((s) => s.proxy === proxy && s.phase === at);
    expect(of("closed", "before").every((s) => s.status === 200)).toBe(true);
    expect(of("closed", "down").length).toBeGreaterThan(0);
    expect(of("closed", "down").map((s) => [s.status, s.code])).toEqual(of("closed", "down").map(() => [503, "limits_unavailable"]));
    expect(of("open", "down").length).toBeGreaterThan(0);
    expect(of("open", "down").every((s) => s.status === 200)).toBe(true);
    expect(of("closed", "after").some((s) => s.status === 200)).toBe(true);
    expect(of("closed", "after").at(-1)!.status).toBe(200);
    expect(of("open", "after").at(-1)!.status).toBe(200);
    expect([closed, open].every((p) => p.child.exitCode === null)).toBe(true); // the same processes throughout

    // The fail-open replica's calls while Redis was down say so in their records.
    const flagged = await fetch(`${open.url}/audit/records?limit=1000`).then((r) => r.json() as Promise<{ records: AuditRecord[] }>);
    expect(flagged.records.filter((r) => r.error_type === "limits_unavailable:fail_open").length).toBeGreaterThanOrEqual(
      of("open", "down").length,
    );
    expect(closed.output()).toContain("is unreachable");
    expect(closed.output()).toContain("answers again");
  }, 60_000);
});
