// Stage 3 (attribute): who made the call, from headers and body fallbacks; never sent upstream.
import { expect, test } from "bun:test";
import { proxyBeforeAll } from "../helpers/proxy.ts";

const setup = proxyBeforeAll();

const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
const identity = {
  "x-agent-id": "code-review-bot",
  "x-user-id": "alice",
  "x-task-context": "PR review #456",
  "x-session-id": "sess-1",
  "x-parent-agent-id": "orchestrator",
  traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
};

async function call(path: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${setup.proxy.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  await response.arrayBuffer();
  const records = await setup.proxy.records();
  return records.find((r) => r.id === response.headers.get("x-audit-record-id"))!;
}

test("attribution headers land in the record as asserted and never reach the upstream", async () => {
  const record = await call("/v1/chat/completions", { model: "gpt-4o", messages: [] }, identity);
  expect(record).toMatchObject({
    agent_id: "code-review-bot",
    user_id: "alice",
    task_context: "PR review #456",
    session_id: "sess-1",
    parent_agent_id: "orchestrator",
    trace_id: traceId,
    attribution: "asserted",
  });
  const seen = setup.upstream.requests.at(-1)!.headers;
  for (const name of Object.keys(identity)) expect(seen[name]).toBeUndefined();
});

test("the OpenAI body field `user` is the fallback for the user", async () => {
  const record = await call("/v1/chat/completions", { model: "gpt-4o", messages: [], user: "bob" }, { "x-agent-id": "a" });
  expect(record.user_id).toBe("bob");
});

test("the Anthropic metadata.user_id is the fallback for the user; the header wins over it", async () => {
  const body = { model: "claude-sonnet-4-6", max_tokens: 5, messages: [], metadata: { user_id: "carol" } };
  expect((await call("/v1/messages", body)).user_id).toBe("carol");
  expect((await call("/v1/messages", body, { "x-user-id": "dave" })).user_id).toBe("dave");
});

test("a call without any identity is recorded with attribution 'default' and null identities", async () => {
  const record = await call("/v1/embeddings", { model: "text-embedding-3-small", input: "x" });
  expect(record).toMatchObject({ attribution: "default", agent_id: null, user_id: null, task_context: null });
});

test("a malformed traceparent is ignored, not guessed", async () => {
  const record = await call("/v1/chat/completions", { model: "gpt-4o", messages: [] }, { traceparent: "garbage" });
  expect(record.trace_id).toBeNull();
});

test("an oversized identity header is refused with 400 and recorded", async () => {
  const response = await fetch(`${setup.proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-agent-id": "a".repeat(300) },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });
  expect(response.status).toBe(400);
  expect(((await response.json()) as { error: { message: string } }).error.message).toContain("x-agent-id");
  const record = (await setup.proxy.records()).find((r) => r.id === response.headers.get("x-audit-record-id"));
  expect(record).toMatchObject({ outcome: "rejected", error_type: "invalid_attribution" });
});

test("an oversized user id in the body is refused too, never cut short (a cut id could not be erased by its owner)", async () => {
  for (const [path, body, field] of [
    ["/v1/chat/completions", { model: "gpt-4o", messages: [], user: "u".repeat(300) }, "user"],
    [
      "/v1/messages",
      { model: "claude-sonnet-4-6", max_tokens: 5, messages: [], metadata: { user_id: "u".repeat(300) } },
      "metadata.user_id",
    ],
  ] as const) {
    const response = await fetch(`${setup.proxy.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(response.status).toBe(400);
    expect(await response.text()).toContain(field);
    const record = (await setup.proxy.records()).find((r) => r.id === response.headers.get("x-audit-record-id"));
    expect(record).toMatchObject({ outcome: "rejected", error_type: "invalid_attribution", user_id: null });
  }
});
