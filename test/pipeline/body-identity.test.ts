// The user a request body names (OpenAI `user`, Anthropic `metadata.user_id`), with the shapes
// Claude Code and the Agent SDK put there reduced to their stable part.
import { expect, test } from "bun:test";
import { bodyIdentity, claudeCodeUserId } from "../../src/pipeline/body-identity.ts";

const device = "3f4a1b7c8d9e0f1234567890abcdef1234567890abcdef1234567890abcdef12";
const account = "0d6c7c43-6f3e-4a55-9d1a-4c1b2f0e9a77";
const session = "2c4e1cf0-7a67-4d2e-9a4b-1d16d3f44752";
const anthropic = { kind: "messages", wire: "anthropic", path: "/v1/messages", method: "POST", billed: true } as const;
const openai = { kind: "chat.completions", wire: "openai", path: "/v1/chat/completions", method: "POST", billed: true } as const;

test("Claude Code's JSON user_id: the account when logged in, the session apart", () => {
  const value = JSON.stringify({ device_id: device, account_uuid: account, session_id: session });
  expect(claudeCodeUserId(value)).toEqual({ user: account, session });
});

test("Claude Code's JSON user_id without an account (an API key, not a login): the device", () => {
  const value = JSON.stringify({ device_id: device, account_uuid: "", session_id: session });
  expect(claudeCodeUserId(value)).toEqual({ user: device, session });
  expect(claudeCodeUserId(JSON.stringify({ device_id: device, session_id: session }))).toEqual({ user: device, session });
});

test("extra keys (CLAUDE_CODE_EXTRA_METADATA) do not change what is taken", () => {
  const value = JSON.stringify({ team: "platform", device_id: device, account_uuid: account, session_id: session });
  expect(claudeCodeUserId(value)).toEqual({ user: account, session });
});

test("the older string form user_<device>_account_<account>_session_<session>", () => {
  expect(claudeCodeUserId(`user_${device}_account_${account}_session_${session}`)).toEqual({ user: account, session });
  expect(claudeCodeUserId(`user_${device}_account__session_${session}`)).toEqual({ user: device, session });
});

test("anything else is an ordinary user id, left to the caller as sent", () => {
  for (const value of [
    "alice",
    "user_42",
    '{"name":"alice"}',
    "{not json",
    JSON.stringify({ device_id: "", session_id: session }),
    `user_${device}`,
  ]) {
    expect(claudeCodeUserId(value)).toBeNull();
  }
});

test("bodyIdentity reads the field of the wire format, and recognises Claude Code in either", () => {
  const blob = JSON.stringify({ device_id: device, account_uuid: "", session_id: session });
  expect(bodyIdentity({ metadata: { user_id: blob } }, anthropic)).toEqual({ field: "metadata.user_id", user: device, session });
  expect(bodyIdentity({ metadata: { user_id: "carol" } }, anthropic)).toEqual({ field: "metadata.user_id", user: "carol", session: null });
  expect(bodyIdentity({ user: blob }, openai)).toEqual({ field: "user", user: device, session });
  expect(bodyIdentity({ user: "bob" }, openai)).toEqual({ field: "user", user: "bob", session: null });
  expect(bodyIdentity({ user: 7 }, openai)).toBeNull();
  expect(bodyIdentity(null, openai)).toBeNull();
  expect(bodyIdentity({ user: "bob" }, anthropic)).toBeNull();
});
