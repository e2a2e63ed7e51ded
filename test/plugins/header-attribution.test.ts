// headerAttribution() against a running proxy: header bytes are UTF-8, ids are NFC, invisible and
// control characters are refused (from headers and from the body alike), a repeated identity
// header is refused, and Claude Code's metadata.user_id is reduced to its stable part.
import { expect, test } from "bun:test";
import { connect } from "node:net";
import { proxyBeforeAll } from "../helpers/proxy.ts";

const setup = proxyBeforeAll();

/** What a client that sends UTF-8 (curl, Python) puts on the wire, as a fetch header value. */
const utf8 = (text: string) => Buffer.from(text, "utf8").toString("latin1");
const chatBody = (extra: Record<string, unknown> = {}) => ({ model: "gpt-4o", messages: [], ...extra });
const messagesBody = (userId: string) => ({ model: "claude-sonnet-4-6", max_tokens: 5, messages: [], metadata: { user_id: userId } });

async function call(path: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${setup.proxy.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  const id = response.headers.get("x-audit-record-id");
  const record = (await setup.proxy.records()).find((r) => r.id === id)!;
  return { status: response.status, text, record };
}

/** A raw HTTP/1.1 request with header lines exactly as given (fetch joins repeated headers itself). */
function rawCall(headerLines: string[]): Promise<{ status: number; body: string; recordId: string | null }> {
  const body = JSON.stringify(chatBody());
  const { port } = new URL(setup.proxy.url);
  const head = [
    "POST /v1/chat/completions HTTP/1.1",
    "Host: x",
    "Content-Type: application/json",
    `Content-Length: ${body.length}`,
    "Connection: close",
    ...headerLines,
  ].join("\r\n");
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(Number(port), "127.0.0.1", () =>
      socket.write(Buffer.concat([Buffer.from(`${head}\r\n\r\n`, "utf8"), Buffer.from(body)])),
    );
    socket.on("data", (data: Buffer) => chunks.push(data));
    socket.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const [headText, ...rest] = text.split("\r\n\r\n");
      resolve({
        status: Number(headText!.split(" ")[1]),
        body: rest.join("\r\n\r\n"),
        recordId: /x-audit-record-id: (\S+)/i.exec(headText!)?.[1] ?? null,
      });
    });
    socket.on("error", reject);
  });
}

test("UTF-8 attribution headers are recorded as the characters the client sent", async () => {
  const { status, record } = await call("/v1/chat/completions", chatBody(), {
    "x-agent-id": utf8("prüfer-bot"),
    "x-user-id": utf8("josé.garcía"),
    "x-task-context": utf8("Überprüfung PR #456 — 李小龙"),
    "x-session-id": utf8("sitzung-ä"),
    "x-parent-agent-id": utf8("orquestador-ñ"),
  });
  expect(status).toBe(200);
  expect(record).toMatchObject({
    agent_id: "prüfer-bot",
    user_id: "josé.garcía",
    task_context: "Überprüfung PR #456 — 李小龙",
    session_id: "sitzung-ä",
    parent_agent_id: "orquestador-ñ",
  });
});

test("a raw UTF-8 header on the wire (as curl sends it) lands as text, not as its bytes", async () => {
  const answer = await rawCall(["X-User-ID: josé"]);
  expect(answer.status).toBe(200);
  const record = (await setup.proxy.records()).find((r) => r.id === answer.recordId);
  expect(record?.user_id).toBe("josé");
});

test("a header that is not valid UTF-8 is refused with 400 naming it, and recorded", async () => {
  // A JavaScript client that puts "josé" in a header sends Latin-1: the single byte 0xE9.
  const { status, text, record } = await call("/v1/chat/completions", chatBody(), { "x-user-id": "jos\u00e9" });
  expect(status).toBe(400);
  expect(text).toContain("x-user-id is not valid UTF-8");
  expect(record).toMatchObject({ outcome: "rejected", error_type: "invalid_attribution", user_id: null });
});

test("decomposed (NFD) ids from headers and the body are recorded composed (NFC): one person, one id", async () => {
  const nfd = "jose\u0301";
  const fromHeader = await call("/v1/chat/completions", chatBody(), { "x-user-id": utf8(nfd), "x-agent-id": utf8("rene\u0301") });
  const fromBody = await call("/v1/chat/completions", chatBody({ user: nfd }));
  const fromMetadata = await call("/v1/messages", messagesBody(nfd));
  for (const { record } of [fromHeader, fromBody, fromMetadata]) expect(record.user_id).toBe("jos\u00e9");
  expect(fromHeader.record.agent_id).toBe("ren\u00e9");
});

test("an invisible or bidi character in an identity header is refused, naming the header and the code point", async () => {
  for (const [header, value, codePoint] of [
    ["x-user-id", "alice\u200b", "U+200B"],
    ["x-agent-id", "bot\u2066", "U+2066"],
    ["x-session-id", "s\u202e1", "U+202E"],
    ["x-parent-agent-id", "\u200dplanner", "U+200D"],
  ] as const) {
    const { status, text, record } = await call("/v1/chat/completions", chatBody(), { [header]: utf8(value) });
    expect(status).toBe(400);
    expect(text).toContain(`Header ${header} contains ${codePoint}`);
    expect(record).toMatchObject({ outcome: "rejected", error_type: "invalid_attribution" });
  }
});

test("NUL, CR, LF and invisible characters in the body's user are refused like a header's", async () => {
  for (const [value, codePoint] of [
    ["ali\u0000ce", "U+0000"],
    ["alice\r\nFORGED", "U+000D"],
    ["ali\nce", "U+000A"],
    ["alice\u200b", "U+200B"],
  ] as const) {
    const openai = await call("/v1/chat/completions", chatBody({ user: value }));
    expect(openai.status).toBe(400);
    expect(openai.text).toContain(`The body field user contains ${codePoint}`);
    expect(openai.record).toMatchObject({ outcome: "rejected", error_type: "invalid_attribution", user_id: null });
    const anthropic = await call("/v1/messages", messagesBody(value));
    expect(anthropic.status).toBe(400);
    expect(anthropic.text).toContain(`The body field metadata.user_id contains ${codePoint}`);
  }
});

test("task context is free text: commas, joiners and non-Latin scripts are kept; a line break is refused", async () => {
  const task = "PR review #456, part 2 — می\u200cخواهم";
  const kept = await call("/v1/chat/completions", chatBody(), { "x-task-context": utf8(task) });
  expect(kept.record.task_context).toBe(task);
  const forged = await rawCall(["X-Task-Context: PR \u0085FORGED"]);
  expect(forged.status).toBe(400);
  expect(forged.body).toContain("Header x-task-context contains U+0085");
});

test("a repeated identity header is refused with 400, not recorded as one id 'alice, bob'", async () => {
  for (const lines of [
    ["X-User-ID: alice", "X-User-ID: bob"],
    ["X-Agent-ID: a", "x-agent-id: b"],
    ["X-Session-ID: s1", "X-Session-ID: s2"],
  ]) {
    const answer = await rawCall(lines);
    expect(answer.status).toBe(400);
    expect(answer.body).toContain("more than once");
    const record = (await setup.proxy.records()).find((r) => r.id === answer.recordId);
    expect(record).toMatchObject({ outcome: "rejected", error_type: "invalid_attribution", user_id: null });
  }
  // One header carrying a comma is the same bytes after Bun joins repeats: ids cannot hold one.
  expect((await rawCall(["X-User-ID: Doe, John"])).status).toBe(400);
});

const device = "5dd07c33da27e6d2968d94ea20bf47a7b090b6b158b82328d54da2909a108e84";
const account = "0d6c7c43-6f3e-4a55-9d1a-4c1b2f0e9a77";
const session = "d2e70091-3007-41a3-a916-cb8b0d3098de";

test("Claude Code's JSON metadata.user_id: the account (else the device) is the user, its session the session", async () => {
  const loggedIn = await call(
    "/v1/messages",
    messagesBody(JSON.stringify({ device_id: device, account_uuid: account, session_id: session })),
  );
  expect(loggedIn.record).toMatchObject({ user_id: account, session_id: session, attribution: "asserted" });
  const apiKey = await call("/v1/messages", messagesBody(JSON.stringify({ device_id: device, account_uuid: "", session_id: session })));
  expect(apiKey.record).toMatchObject({ user_id: device, session_id: session });
  // A new session of the same installation is the same user.
  const next = await call(
    "/v1/messages",
    messagesBody(JSON.stringify({ device_id: device, account_uuid: "", session_id: crypto.randomUUID() })),
  );
  expect(next.record.user_id).toBe(device);
});

test("Claude Code's older user_<device>_account_<account>_session_<session> string, in either wire format", async () => {
  const legacy = await call("/v1/messages", messagesBody(`user_${device}_account__session_${session}`));
  expect(legacy.record).toMatchObject({ user_id: device, session_id: session });
  const viaOpenAI = await call("/v1/chat/completions", chatBody({ user: `user_${device}_account_${account}_session_${session}` }));
  expect(viaOpenAI.record).toMatchObject({ user_id: account, session_id: session });
});

test("X-User-ID and X-Session-ID still win over what Claude Code's metadata says", async () => {
  const blob = JSON.stringify({ device_id: device, account_uuid: "", session_id: session });
  const both = await call("/v1/messages", messagesBody(blob), { "x-user-id": "alice", "x-session-id": "review-7" });
  expect(both.record).toMatchObject({ user_id: "alice", session_id: "review-7" });
  const userOnly = await call("/v1/messages", messagesBody(blob), { "x-user-id": "alice" });
  expect(userOnly.record).toMatchObject({ user_id: "alice", session_id: session });
});
