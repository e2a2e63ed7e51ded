// Over a WebSocket, keys mode and limits act as they do over HTTP: a connection without a valid
// proxy key is refused before the upgrade (and recorded), the upstream gets the proxy's provider
// key, and each response is limited on its own — a refused one is an `error` event on the open
// socket and a `rejected` record, never a frame upstream.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { signedKeyTable } from "../helpers/keys.ts";
import { apiKeys, headerAttribution, openai, sqliteAudit, tiers } from "../../plugins/index.ts";
import { startFakeResponsesSocket, type FakeResponsesSocket } from "../helpers/fake-responses-socket.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

const providerKey = "sk-proxy-held-provider-key";
let upstream: FakeResponsesSocket;
let proxy: TestProxy;
let key: string;

beforeAll(async () => {
  process.env.OPENAI_API_KEY = providerKey;
  upstream = await startFakeResponsesSocket();
  proxy = await startTestProxy(upstream.url, {
    plugins: [
      openai({ baseURL: `${upstream.url}/v1` }),
      headerAttribution(),
      apiKeys(),
      tiers({ tiers: { t: { requestsPerMinute: 1, per: ["agent"] } }, default: "t" }),
      sqliteAudit(),
    ],
  });
  const keys = signedKeyTable(proxy.logDb);
  ({ key } = keys.create({ agents: ["socket-bot"] }));
  keys.close();
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
  delete process.env.OPENAI_API_KEY;
});

const handshake = (authorization: string) =>
  fetch(`${proxy.url}/v1/responses`, {
    headers: {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
      authorization,
    },
  });

test("a connection with a key the proxy does not know is refused with 401 before the upgrade, and recorded", async () => {
  const seen = upstream.handshakes.length;
  const response = await handshake("Bearer aa_not_a_key");
  expect(response.status).toBe(401);
  const [record] = (await proxy.settled(1, 30_000)).filter((r) => r.id === response.headers.get("x-audit-record-id"));
  expect(record).toMatchObject({ outcome: "rejected", status: 401, endpoint: "/v1/responses" });
  expect(upstream.handshakes.length).toBe(seen);
});

test("the upstream gets the proxy's provider key; the second response in the minute is refused on the socket", async () => {
  const before = (await proxy.records()).length;
  const ws = new WebSocket(`${proxy.url.replace("http:", "ws:")}/v1/responses`, {
    headers: { authorization: `Bearer ${key}`, "x-agent-id": "socket-bot" },
  } as unknown as string[]);
  const events: { type: string; status?: number; error?: { code: string } }[] = [];
  ws.addEventListener("message", (event) => events.push(JSON.parse(event.data as string)));
  await new Promise((resolve) => ws.addEventListener("open", resolve, { once: true }));
  expect(upstream.handshakes.at(-1)!.headers.authorization).toBe(`Bearer ${providerKey}`);
  const create = JSON.stringify({ type: "response.create", model: "gpt-5.5", input: "hi" });
  ws.send(create);
  ws.send(create);
  const deadline = Date.now() + 5000;
  while (events.filter((e) => e.type === "response.completed" || e.type === "error").length < 2 && Date.now() < deadline)
    await Bun.sleep(5);
  const ends = events.filter((e) => e.type === "response.completed" || e.type === "error");
  expect(ends.map((e) => e.type)).toEqual(["response.completed", "error"]);
  expect(ends[1]).toMatchObject({ status: 429, error: { code: "rate_limited" } });
  expect(upstream.frames.filter((f) => f === create).length).toBe(1);
  ws.close();
  // In the order the responses were asked for (the refusal is committed first: it is recorded at once).
  const records = (await proxy.settled(before + 2, 30_000)).slice(before).sort((a, b) => a.id.localeCompare(b.id));
  expect(records.map((r) => [r.outcome, r.status, r.attribution, r.agent_id])).toEqual([
    ["completed", 200, "verified", "socket-bot"],
    ["rejected", 429, "verified", "socket-bot"],
  ]);
});
