// Codex CLI (`@openai/codex`, its built-in `openai` provider) run non-interactively with
// `codex exec`, its base URL the proxy's: it talks the Responses API over the proxy's WebSocket
// at once — no failed upgrade, no retry, no fallback to HTTP — and its warmup and its model call
// are each a completed record, the call with the provider's usage. (Codex's built-in provider
// takes no extra headers, so its calls are attributed by a proxy key or the defaults.)
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { socketUsage, startFakeResponsesSocket, type FakeResponsesSocket } from "../helpers/fake-responses-socket.ts";
import { startTestProxy, tempDir, type TestProxy } from "../helpers/proxy.ts";

const codex = resolve(import.meta.dir, "../../node_modules/.bin/codex");
let upstream: FakeResponsesSocket;
let proxy: TestProxy;

beforeAll(async () => {
  upstream = await startFakeResponsesSocket();
  proxy = await startTestProxy(upstream.url);
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
});

test("codex exec answers through the proxy's WebSocket, each response recorded, with no HTTP fallback", async () => {
  const home = tempDir();
  const work = join(home, "work");
  mkdirSync(work);
  await Bun.write(
    join(home, "config.toml"),
    ['model = "gpt-5.5"', `openai_base_url = "${proxy.url}/v1"`, "check_for_update_on_startup = false"].join("\n"),
  );
  const child = Bun.spawn([codex, "exec", "--skip-git-repo-check", "Say hi"], {
    cwd: work,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: home,
      CODEX_HOME: home,
      OPENAI_API_KEY: "sk-codex-client",
      CODEX_API_KEY: "sk-codex-client",
      NO_COLOR: "1",
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: 60_000,
  });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  expect({ exitCode, stdout: stdout.trim() }, stderr).toEqual({ exitCode: 0, stdout: "Hello from the fake socket." });
  expect(upstream.httpCalls).toBe(0);
  expect(upstream.handshakes.length).toBe(1);
  const handshake = upstream.handshakes[0]!.headers;
  expect(handshake.authorization).toBe("Bearer sk-codex-client");
  expect(handshake["openai-beta"]).toContain("responses_websockets");
  // Codex warms the socket up first (`generate: false`), then asks for the answer: two responses.
  const records = await proxy.settled(2, 30_000);
  expect(records.filter((r) => r.outcome === "rejected")).toEqual([]);
  expect(upstream.frames.map((frame) => (JSON.parse(frame as string) as { generate?: boolean }).generate)).toEqual([false, undefined]);
  expect(records.map((r) => [r.endpoint, r.outcome, r.model, r.stream, r.input_tokens, r.output_tokens, r.usage_source])).toEqual([
    ["/v1/responses", "completed", "gpt-5.5", true, null, null, "none"],
    ["/v1/responses", "completed", "gpt-5.5", true, socketUsage.input_tokens, socketUsage.output_tokens, "provider"],
  ]);
}, 90_000);
