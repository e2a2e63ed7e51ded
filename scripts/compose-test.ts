/**
 * The compose test: runs docker-compose.yml as users do (`docker-compose up -d`: two replicas,
 * PostgreSQL, Redis), with test/docker/compose.test.yml on top (local base images, a fake OpenAI
 * upstream, a config with tiers), and checks what the file promises:
 *   - both replicas build from the Dockerfile, start, answer /healthz and pass their HEALTHCHECK;
 *   - calls through either replica reach the upstream and land in one hash chain in the compose
 *     PostgreSQL: each call the upstream saw has exactly one record, whichever replica served it,
 *     and `agent-attr audit verify` (run in a replica, against that PostgreSQL) passes;
 *   - a limit of 10 requests per minute, kept in the compose Redis, admits 10 in total across the
 *     two replicas (each process alone would admit 10);
 *   - a replica killed with SIGKILL mid-stream: the survivor records its call as interrupted after
 *     the lease, once, and `restart: unless-stopped` brings it back;
 *   - PostgreSQL, then Redis, stopped: 503 audit_unavailable / limits_unavailable before any
 *     upstream; started again: calls are served again without restarting the replicas;
 *   - the signing key both replicas use is one file on the shared volume;
 * then `docker-compose down -v` (also when a check fails). Prints one line per check and
 * "N passed, N failed"; exits 1 on any failure, 2 when it cannot run (no daemon: the message
 * says how to start one). Run: `bun scripts/compose-test.ts` (docs/development.md).
 */
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
const project = `agent-attr-compose-test-${process.pid}`;
const composeFiles = ["-f", "docker-compose.yml", "-f", "test/docker/compose.test.yml"];

function freePort(): number {
  const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
  const port = probe.port as number;
  probe.stop(true);
  return port;
}
const ports = { replica1: freePort(), replica2: freePort(), fake: freePort() };
const adminToken = randomBytes(32).toString("hex");
const env: Record<string, string> = {
  ...(process.env as Record<string, string>),
  COMPOSE_PROJECT_NAME: project,
  AGENT_ATTR_ADMIN_TOKEN: adminToken,
  AGENT_ATTR_PORT_1: `127.0.0.1:${ports.replica1}`,
  AGENT_ATTR_PORT_2: `127.0.0.1:${ports.replica2}`,
  AGENT_ATTR_FAKE_PORT: String(ports.fake),
  DOCKER_BUILDKIT: "0",
  COMPOSE_DOCKER_CLI_BUILD: "0",
};
const replicas = [
  { name: "replica-1", url: `http://127.0.0.1:${ports.replica1}` },
  { name: "replica-2", url: `http://127.0.0.1:${ports.replica2}` },
];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
async function run(cmd: string[], options: { quiet?: boolean } = {}): Promise<Run> {
  const proc = Bun.spawn(cmd, { cwd: root, env, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0 && !options.quiet) process.stderr.write(`$ ${cmd.join(" ")} (exit ${code})\n${stdout}${stderr}\n`);
  return { code, stdout, stderr };
}
const compose = (args: string[], options?: { quiet?: boolean }) => run(["docker-compose", ...composeFiles, ...args], options);

let passed = 0;
let failed = 0;
function check(name: string, ok: boolean, detail = "") {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok || !detail ? "" : `\n     ${detail}`}`);
}

async function waitFor(what: string, ms: number, probe: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return true;
    await Bun.sleep(500);
  }
  console.log(`     gave up waiting for ${what} after ${ms / 1000} s`);
  return false;
}

/** A field of the service's container, by `docker inspect --format` template. */
async function inspect(service: string, template: string): Promise<string> {
  const id = (await compose(["ps", "-q", service])).stdout.trim();
  if (!id) return "no container";
  return (await run(["docker", "inspect", "--format", template, id], { quiet: true })).stdout.trim();
}

interface Call {
  replica: (typeof replicas)[number];
  user: string;
  marker: string;
  stream: boolean;
  status: number;
}
function chatRequest(
  replica: (typeof replicas)[number],
  user: string,
  marker: string,
  stream: boolean,
  extra: Record<string, string> = {},
) {
  return fetch(`${replica.url}/v1/chat/completions`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      authorization: "Bearer sk-client-key",
      "x-agent-id": "compose-test",
      "x-user-id": user,
      "x-session-id": replica.name,
      ...extra,
    },
    body: JSON.stringify({ model: "gpt-4o-mini", stream, messages: [{ role: "user", content: marker }] }),
  });
}
async function chat(replica: (typeof replicas)[number], user: string, marker: string, stream: boolean): Promise<Call> {
  const response = await chatRequest(replica, user, marker, stream);
  const body = await response.text();
  if (response.status === 200 && !body.includes(stream ? "[DONE]" : "Hello world")) {
    throw new Error(`${replica.name} answered 200 without the upstream's answer: ${body.slice(0, 200)}`);
  }
  return { replica, user, marker, stream, status: response.status };
}

interface SeenRequest {
  method: string;
  path: string;
  body: string;
}
interface RecordRow {
  seq: number;
  user_id: string | null;
  session_id: string | null;
  status: number | null;
  outcome: string | null;
  error_type: string | null;
}

/** The message of every chat call the fake upstream received, in order. */
async function upstreamMarkers(): Promise<string[]> {
  const seen = (await (await fetch(`http://127.0.0.1:${ports.fake}/requests`)).json()) as SeenRequest[];
  return seen
    .filter((request) => request.path === "/v1/chat/completions")
    .map((request) => (JSON.parse(request.body) as { messages: { content: string }[] }).messages[0]!.content);
}

async function cliJson<T>(service: string, args: string[]): Promise<T> {
  const out = await compose(["exec", "-T", service, "agent-attr", ...args]);
  if (out.code !== 0) throw new Error(`agent-attr ${args.join(" ")} in ${service}: exit ${out.code}`);
  return JSON.parse(out.stdout) as T;
}

/** Every volume of the daemon, named or anonymous (the image's VOLUME /data gives each replica one). */
async function volumeNames(): Promise<Set<string>> {
  return new Set((await run(["docker", "volume", "ls", "-q"], { quiet: true })).stdout.split("\n").filter(Boolean));
}
let volumesBefore: Set<string> | undefined;
/** Set once `up` is tried: from then on `down -v` runs, whatever happens. */
let composeUp = false;

async function main(): Promise<number> {
  const info = await run(["docker", "info", "--format", "{{.ServerVersion}}"], { quiet: true });
  if (info.code !== 0) {
    console.error(
      `No Docker daemon answers (${info.stderr.trim().split("\n").pop()}).\n` +
        'Start one with scripts/dockerd.sh start (docs/development.md "The compose test"); stop it with scripts/dockerd.sh stop.',
    );
    return 2;
  }
  console.log(`--- Docker ${info.stdout.trim()}; project ${project}`);
  volumesBefore = await volumeNames();
  const images = await run(["bash", "scripts/docker-test-images.sh"]);
  if (images.code !== 0) return 2;

  const commit = (await run(["git", "rev-parse", "--short=12", "HEAD"], { quiet: true })).stdout.trim() || "unknown";
  console.log("--- docker-compose build");
  const build = await compose(["build", "--build-arg", `AGENT_ATTR_BUILD_COMMIT=${commit}`]);
  check("both replicas build from the Dockerfile", build.code === 0);
  if (build.code !== 0) return 1;

  console.log("--- docker-compose up -d");
  composeUp = true;
  const up = await compose(["up", "-d"]);
  check("docker-compose up -d starts PostgreSQL, Redis and both replicas", up.code === 0);
  if (up.code !== 0) return 1;

  for (const replica of replicas) {
    const ready = await waitFor(`${replica.name}'s /healthz`, 60_000, async () => (await fetch(`${replica.url}/healthz`)).ok);
    check(`${replica.name} answers /healthz on its published port`, ready);
    if (!ready) return 1;
  }
  const version = await compose(["exec", "-T", "replica-1", "agent-attr", "--version"]);
  check(`the image's binary names the commit it was built from (${commit})`, version.stdout.includes(commit), version.stdout.trim());

  // Calls spread over both replicas, plain and streamed: all reach the upstream.
  const calls: Call[] = [];
  for (let i = 0; i < 8; i++) {
    calls.push(await chat(replicas[i % 2]!, `spread-user-${i % 3}`, `spread-${i}`, i % 4 === 3));
  }
  check(
    "8 calls through the two replicas (2 streamed) all answer 200 with the upstream's answer",
    calls.every((call) => call.status === 200),
    calls.map((call) => `${call.replica.name}:${call.status}`).join(" "),
  );

  // One limit across replicas: 10 per minute for users limited-*, kept in Redis.
  const user = `limited-${randomBytes(4).toString("hex")}`;
  const limited: Call[] = [];
  const started = Date.now();
  for (let i = 0; i < 20; i++) limited.push(await chat(replicas[i % 2]!, user, `${user}-${i}`, false));
  const elapsed = Date.now() - started;
  calls.push(...limited);
  const admitted = limited.filter((call) => call.status === 200).length;
  const refused = limited.filter((call) => call.status === 429);
  // GCRA lets one more through every 6 s: exactly 10 when the 20 calls take less (they take about
  // a second), never more than 10 plus what refilled meanwhile on a starved machine.
  const allowed = 10 + Math.floor(elapsed / 6_000);
  check(
    `a limit of 10 requests per minute admits ${allowed === 10 ? "exactly 10" : `10 (+${allowed - 10} refilled in ${elapsed} ms)`} of 20 calls spread over both replicas (the rest get 429)`,
    admitted >= 10 && admitted <= allowed && refused.length === 20 - admitted,
    `admitted ${admitted}, 429: ${refused.length}, other: ${limited.filter((c) => c.status !== 200 && c.status !== 429).map((c) => c.status)}`,
  );
  check(
    "both replicas refuse once the shared limit is spent",
    replicas.every((replica) => refused.some((call) => call.replica === replica)),
  );

  // What the upstream saw against what the trail holds.
  const seenMarkers = await upstreamMarkers();
  const forwarded = calls.filter((call) => call.status === 200);
  check(
    `the upstream saw exactly the ${forwarded.length} admitted calls, each once`,
    seenMarkers.length === forwarded.length && forwarded.every((call) => seenMarkers.filter((m) => m === call.marker).length === 1),
    `seen ${seenMarkers.length}: ${seenMarkers.join(",")}`,
  );

  // Final records land once the call is done; give the writers a moment, then read through each replica's CLI.
  let records: RecordRow[] = [];
  await waitFor("every call's record", 15_000, async () => {
    records = (
      await cliJson<{ records: RecordRow[] }>("replica-2", [
        "audit",
        "query",
        "--agent",
        "compose-test",
        "--limit",
        "1000",
        "--format",
        "json",
      ])
    ).records;
    return records.length >= calls.length && records.every((record) => record.outcome !== null);
  });
  const bySession = (name: string) => records.filter((record) => record.session_id === name);
  check(
    `the trail holds one record per call (${calls.length}), those served by replica-1 and by replica-2 alike`,
    records.length === calls.length &&
      replicas.every((replica) => bySession(replica.name).length === calls.filter((call) => call.replica === replica).length),
    `records ${records.length}; ${replicas.map((r) => `${r.name}: ${bySession(r.name).length}`).join(", ")}`,
  );
  const completedOf = (u: string) => records.filter((r) => r.user_id === u && r.outcome === "completed" && r.status === 200).length;
  const users = [...new Set(calls.map((call) => call.user))];
  check(
    "each user's completed records match the calls the upstream saw for them; the refused ones are recorded as rejected with 429",
    users.every((u) => completedOf(u) === forwarded.filter((call) => call.user === u).length) &&
      records.filter((r) => r.user_id === user && r.status === 429 && r.outcome === "rejected").length === refused.length,
    records
      .filter((r) => r.user_id === user)
      .map((r) => `${r.status}/${r.outcome}/${r.error_type}`)
      .join(" "),
  );
  const seqs = records.map((record) => record.seq).sort((a, b) => a - b);
  check(
    "the records of both replicas are one sequence (one chain, no gaps)",
    seqs.every((seq, i) => i === 0 || seq === seqs[i - 1]! + 1),
    seqs.join(","),
  );

  // No replica crashed and was brought back by `restart: unless-stopped` behind our back.
  const restarts = await Promise.all(replicas.map((replica) => inspect(replica.name, "{{.RestartCount}}")));
  check(
    "neither replica restarted",
    restarts.every((count) => count === "0"),
    restarts.join(" "),
  );

  // kill -9 of a replica mid-stream: after the lease (10 s + a 2 s heartbeat) a survivor records
  // the call as interrupted, once; `restart: unless-stopped` brings the replica back.
  const killed = `killed-${randomBytes(4).toString("hex")}`;
  const inFlight = await chatRequest(replicas[0]!, killed, killed, true, { "x-fake-scenario": "gap:60000" });
  const firstChunk = await inFlight.body!.getReader().read();
  check("a stream through replica-1 is under way (first chunk received)", inFlight.status === 200 && !firstChunk.done);
  const pid = await inspect("replica-1", "{{.State.Pid}}");
  const killedAt = Date.now();
  process.kill(Number(pid), "SIGKILL");
  let killedRecords: RecordRow[] = [];
  const recorded = await waitFor("the killed call's record", 40_000, async () => {
    killedRecords = (await cliJson<{ records: RecordRow[] }>("replica-2", ["audit", "query", "--user", killed, "--format", "json"]))
      .records;
    return killedRecords.some((record) => record.outcome !== null);
  });
  check(
    `the call in flight on the killed replica is recorded once, as interrupted, by the survivor (after ${Math.round((Date.now() - killedAt) / 1000)} s)`,
    recorded && killedRecords.length === 1 && killedRecords[0]!.outcome === "interrupted" && (await upstreamMarkers()).includes(killed),
    JSON.stringify(killedRecords),
  );
  const back = await waitFor("replica-1 back after kill -9", 60_000, async () => (await fetch(`${replicas[0]!.url}/healthz`)).ok);
  const afterKill = back ? await chat(replicas[0]!, "after-kill", "after-kill", false) : undefined;
  check(
    "restart: unless-stopped brings the killed replica back, and it serves calls again",
    back && afterKill?.status === 200 && (await inspect("replica-1", "{{.RestartCount}}")) === "1",
  );

  // PostgreSQL, then Redis, stopped and started again: calls are refused before any upstream
  // (503 audit_unavailable, 503 limits_unavailable), and served again once the server is back,
  // without a restart of the replicas.
  for (const [service, code] of [
    ["postgres", "audit_unavailable"],
    ["redis", "limits_unavailable"],
  ] as const) {
    const before = (await upstreamMarkers()).length;
    await compose(["stop", service]);
    const down = await chatRequest(replicas[1]!, `${service}-down`, `${service}-down`, false);
    const downBody = await down.text();
    check(
      `with ${service} stopped, a call gets 503 ${code} and never reaches the upstream`,
      down.status === 503 && downBody.includes(code) && (await upstreamMarkers()).length === before,
      `${down.status} ${downBody.slice(0, 200)}`,
    );
    await compose(["start", service]);
    let status = 0;
    await waitFor(`a call after ${service} is back`, 30_000, async () => {
      status = (await chat(replicas[1]!, `${service}-back`, `${service}-back-${Date.now()}`, false)).status;
      return status === 200;
    });
    check(`once ${service} is back, the same replica serves calls again (no restart)`, status === 200, String(status));
  }

  for (const replica of replicas) {
    const verify = await compose(["exec", "-T", replica.name, "agent-attr", "audit", "verify"]);
    check(
      `agent-attr audit verify in ${replica.name} passes over the compose PostgreSQL`,
      verify.code === 0,
      verify.stdout + verify.stderr,
    );
  }

  const keys = await Promise.all(
    replicas.map(
      async (replica) => (await compose(["exec", "-T", replica.name, "sha256sum", "/keys/audit.signing-key"])).stdout.split(" ")[0],
    ),
  );
  check("both replicas sign with the one key file on the shared keys volume", Boolean(keys[0]) && keys[0] === keys[1], keys.join(" "));

  // Docker's first health probe runs one interval (30 s) after the start.
  for (const replica of replicas) {
    let status = "";
    await waitFor(
      `${replica.name}'s HEALTHCHECK`,
      60_000,
      async () => (status = await inspect(replica.name, "{{.State.Health.Status}}")) === "healthy",
    );
    check(`${replica.name}'s HEALTHCHECK (agent-attr health) reports healthy`, status === "healthy", status);
  }
  return failed === 0 ? 0 : 1;
}

let code: number;
try {
  code = await main();
} catch (error) {
  console.log(`FAIL ${(error as Error).message}`);
  failed++;
  code = 1;
} finally {
  if (composeUp && failed > 0) {
    const logs = await compose(["logs", "--no-color", "--tail", "40"], { quiet: true });
    console.log(`--- logs (last 40 lines per service)\n${logs.stdout}`);
  }
  if (composeUp) {
    console.log("--- docker-compose down -v");
    await compose(["down", "-v", "--remove-orphans"]);
  }
}
if (composeUp && volumesBefore) {
  const left = await run(["docker", "ps", "-aq", "--filter", `label=com.docker.compose.project=${project}`], { quiet: true });
  const leftVolumes = [...(await volumeNames())].filter((name) => !volumesBefore!.has(name));
  check(
    "docker-compose down -v leaves no container and no volume (named or anonymous) of the project",
    !left.stdout.trim() && leftVolumes.length === 0,
    `containers: ${left.stdout.trim()}; volumes: ${leftVolumes.join(" ")}`,
  );
}
if (passed + failed > 0) console.log(`${passed} passed, ${failed} failed`);
process.exit(code! === 0 && failed === 0 ? 0 : code! || 1);
