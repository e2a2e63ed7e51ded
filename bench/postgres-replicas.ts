/**
 * `bun bench/postgres-replicas.ts`: scale-out — one, two and three agent-attr replicas on one
 * PostgreSQL trail and one Redis (a tiers limit on every call), against the bare forwarder.
 * Closed loop of BENCH_CONNECTIONS (default 32) keep-alive connections spread evenly over the
 * replicas, the first scenario (OpenAI chat, plain JSON), BENCH_SECONDS per round. Reports
 * throughput, CPU per call (replicas' processes), p50/p99 added over the bare forwarder, and checks
 * that the trail holds one record per answered call. Uses a fresh schema and Redis prefix.
 */
import { SQL } from "bun";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { runLoad } from "./load.ts";
import { killAll, startServer, type Server } from "./procs.ts";
import { scenarios } from "./scenarios.ts";

const pgServer = process.env.AGENT_ATTR_BENCH_PG ?? "postgres://postgres@127.0.0.1:5432/test";
const redisURL = process.env.AGENT_ATTR_BENCH_REDIS ?? "redis://127.0.0.1:6379";
const seconds = Number(process.env.BENCH_SECONDS ?? 8);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 32);
const root = resolve(import.meta.dir, "..");
const bun = process.execPath;
const dir = mkdtempSync(join(tmpdir(), "agent-attr-bench-pg-"));
const schema = `aa_bench_replicas_${process.pid}`;
const logDb = `${pgServer}?schema=${schema}`;
const scenario = scenarios[0]!;
const printedURL = (line: string) => (/^http:\/\/127\.0\.0\.1:\d+$/.test(line) ? line : null);
const listeningURL = (line: string) => (line.includes("listening") ? (/(http:\/\/\S+)/.exec(line)?.[1] ?? null) : null);

const config = join(dir, "agent-attr.config.ts");
writeFileSync(
  config,
  `import { defineConfig } from "agent-attr";
import { headerAttribution, openai, pricing, redisLimiterStore, sqliteAudit, tiers } from "agent-attr/plugins";
export default defineConfig({
  audit: { signingKey: ${JSON.stringify(join(dir, "signing-key"))} },
  plugins: [
    openai(), headerAttribution(), pricing(),
    tiers({ tiers: { t: { requestsPerMinute: 100000000 } }, default: "t", store: redisLimiterStore({ url: ${JSON.stringify(redisURL)}, prefix: "bench-${process.pid}:" }) }),
    sqliteAudit(),
  ],
});
`,
);

async function load(targets: Server[], watch: Record<string, number>) {
  const per = Math.max(1, Math.floor(connections / targets.length));
  const results = await Promise.all(
    targets.map((t, i) =>
      runLoad({
        url: t.url + scenario.path,
        headers: scenario.headers,
        body: scenario.body,
        connections: per,
        warmupSeconds: 2,
        seconds,
        vary: scenario.vary,
        watch: i === 0 ? watch : {},
      }),
    ),
  );
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  return {
    rps: results.reduce((sum, r) => sum + r.rps, 0),
    measured: results.reduce((sum, r) => sum + r.measured, 0),
    p50: sorted(results.map((r) => r.p50))[Math.floor(results.length / 2)]!,
    p99: Math.max(...results.map((r) => r.p99)),
    non2xx: results.reduce((sum, r) => sum + r.non2xx + r.errors, 0),
    cpuMs: results[0]!.cpuMs,
    responses: results.reduce((sum, r) => sum + r.responses, 0),
  };
}

const sql = new SQL(pgServer, { max: 1 });
try {
  const upstream = await startServer("bench upstream", [bun, join(import.meta.dir, "upstream.ts")], { urlOf: printedURL });
  const bare = await startServer("bare forwarder", [bun, join(import.meta.dir, "bare-forwarder.ts"), upstream.url], { urlOf: printedURL });
  const baseline = await load([bare], { bare: bare.proc.pid });
  console.log(
    `load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}; ${connections} connections, ${seconds} s per round`,
  );
  console.log(`bare forwarder: ${Math.round(baseline.rps)} req/s, p50 ${baseline.p50.toFixed(2)} ms, p99 ${baseline.p99.toFixed(2)} ms`);
  console.log(
    "| replicas | req/s | CPU per call (replicas) | added p50 | added p99 | non-2xx | records = answered |\n|---|---|---|---|---|---|---|",
  );
  const replicas: Server[] = [];
  for (let n = 1; n <= 3; n++) {
    replicas.push(
      await startServer(
        `replica ${n}`,
        [bun, join(root, "src/cli/main.ts"), "proxy", "start", "--port", "0", "--log-db", logDb, "--config", config],
        {
          cwd: dir,
          env: {
            ...process.env,
            AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1`,
            AGENT_ATTR_CONFIG: undefined,
            AGENT_ATTR_LOG_DB: undefined,
            AGENT_ATTR_ADMIN_TOKEN: undefined,
            OPENAI_API_KEY: "sk-bench",
            NO_COLOR: "1",
          },
          urlOf: listeningURL,
          timeoutMs: 30_000,
        },
      ),
    );
    const before = Number(((await sql.unsafe(`SELECT count(*) AS n FROM "${schema}".audit_records`)) as { n: string }[])[0]!.n);
    const watch = Object.fromEntries(replicas.map((r, i) => [`r${i}`, r.proc.pid]));
    const result = await load(replicas, watch);
    await Bun.sleep(3000); // the last final records reach the chain
    const after = Number(((await sql.unsafe(`SELECT count(*) AS n FROM "${schema}".audit_records`)) as { n: string }[])[0]!.n);
    const cpu = Object.entries(result.cpuMs)
      .filter(([k]) => k.startsWith("r"))
      .reduce((sum, [, v]) => sum + (v ?? 0), 0);
    const ok = after - before === result.responses - result.non2xx;
    console.log(
      `| ${n} | ${Math.round(result.rps)} | ${((cpu * 1000) / Math.max(1, result.measured)).toFixed(0)} µs | ${(result.p50 - baseline.p50).toFixed(2)} ms | ${(result.p99 - baseline.p99).toFixed(2)} ms | ${result.non2xx} | ${ok ? "yes" : `NO (${after - before} records, ${result.responses - result.non2xx} answered)`} |`,
    );
  }
} finally {
  killAll();
  await sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
  await sql.close();
}
process.exit(0);
