// No response goes up a WebSocket unmetered: a response.create whose type is written with a JSON
// escape, or sent in a binary frame, is still a response (an upstream's JSON parser reads it as
// one), so it gets its record; and consent is held per response, as for an HTTP call.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startFakeResponsesSocket, type FakeResponsesSocket } from "../helpers/fake-responses-socket.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeResponsesSocket;
let proxy: TestProxy;
beforeAll(async () => {
  upstream = await startFakeResponsesSocket();
  proxy = await startTestProxy(upstream.url, { consent: { mode: "enforce", tiers: {} } });
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
});

interface ServerEvent {
  type: string;
  status?: number;
  error?: { code?: string };
}

async function open(user?: string) {
  const headers: Record<string, string> = { authorization: "Bearer sk-client", "x-agent-id": "ws-agent" };
  if (user) headers["x-user-id"] = user;
  const ws = new WebSocket(`${proxy.url.replace("http:", "ws:")}/v1/responses`, { headers } as unknown as string[]);
  const events: ServerEvent[] = [];
  ws.addEventListener("message", (e) => {
    if (typeof e.data === "string") events.push(JSON.parse(e.data) as ServerEvent);
  });
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve, { once: true });
    ws.addEventListener("error", reject, { once: true });
  });
  const ended = async () => {
    for (let i = 0; i < 500 && !events.some((e) => e.type === "response.completed" || e.type === "error"); i++) await Bun.sleep(20);
    return events.at(-1);
  };
  return { ws, events, ended };
}

const create = { type: "response.create", model: "gpt-5.5", input: "hi" };

test("a response.create with an escaped type is metered and recorded like any other", async () => {
  const before = (await proxy.records()).length;
  const { ws, ended } = await open();
  ws.send(JSON.stringify(create).replace('"response.create"', '"response\\u002ecreate"'));
  expect((await ended())?.type).toBe("response.completed");
  ws.close(1000);
  const records = await proxy.settled(before + 1, 30_000);
  expect(records.slice(before)).toMatchObject([{ endpoint: "/v1/responses", outcome: "completed" }]);
});

test("a response.create sent as a binary frame is metered and recorded; other binary frames pass unchanged", async () => {
  const before = (await proxy.records()).length;
  const { ws, ended } = await open();
  ws.send(new TextEncoder().encode(JSON.stringify(create)));
  expect((await ended())?.type).toBe("response.completed");
  const seen = upstream.frames.length;
  ws.send(new Uint8Array([0xff, 0x00, 0x7b]));
  for (let i = 0; i < 100 && upstream.frames.length === seen; i++) await Bun.sleep(20);
  expect(upstream.frames.at(-1)).toEqual(new Uint8Array([0xff, 0x00, 0x7b]));
  ws.close(1000);
  const records = await proxy.settled(before + 1, 30_000);
  expect(records.slice(before)).toMatchObject([{ endpoint: "/v1/responses", outcome: "completed" }]);
});

test("with consent enforced, a response for a user no consent covers is refused on the socket and recorded", async () => {
  const before = (await proxy.records()).length;
  const frames = upstream.frames.length;
  const { ws, ended } = await open("alice");
  ws.send(JSON.stringify(create));
  const last = await ended();
  expect(last).toMatchObject({ type: "error", status: 403, error: { code: "consent_required" } });
  ws.close(1000);
  const records = await proxy.settled(before + 1, 30_000);
  expect(records.slice(before)).toMatchObject([{ outcome: "rejected", status: 403, consent_source: "none" }]);
  expect(upstream.frames.length).toBe(frames);
});
