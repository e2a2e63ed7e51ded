/**
 * The user a request body names: OpenAI's `user` field, Anthropic's `metadata.user_id`.
 *
 * Claude Code (and the Agent SDK, which runs it) fills `metadata.user_id` on its own with a value
 * that changes every session. Its stable part is what identifies the person:
 * - current versions send a JSON string `{"device_id": "<64 hex>", "account_uuid": "<uuid>" | "",
 *   "session_id": "<uuid>", ...}` (extra keys from CLAUDE_CODE_EXTRA_METADATA come first);
 * - older versions send `user_<64 hex device id>_account_<account uuid or empty>_session_<uuid>`.
 * The user is the account uuid when there is one (a Claude.ai or Console login: the same person
 * on every machine), else the device id (one installation); the session uuid is the session.
 */
import { asObject, asString } from "../util.ts";
import type { Endpoint } from "./context.ts";

export interface BodyIdentity {
  /** The field it came from, for error messages. */
  field: "user" | "metadata.user_id";
  /** As sent (an ordinary id), or the stable part of Claude Code's value; not yet checked. */
  user: string;
  /** Claude Code's session id, else null. */
  session: string | null;
}

const legacyClaudeCode = /^user_([0-9a-f]{64})_account_([0-9a-f-]*)_session_([0-9a-f-]+)$/i;

/** The body's user field of the endpoint's wire format, or null when it has none (or not a string). */
export function bodyIdentity(body: Record<string, unknown> | null, endpoint: Endpoint): BodyIdentity | null {
  const field = endpoint.wire === "anthropic" ? "metadata.user_id" : "user";
  const value = endpoint.wire === "anthropic" ? asString(asObject(body?.metadata)?.user_id) : asString(body?.user);
  if (value === null) return null;
  const claudeCode = claudeCodeUserId(value);
  return claudeCode ? { field, ...claudeCode } : { field, user: value, session: null };
}

/** The stable user and the session of a Claude Code `metadata.user_id`, or null for any other value. */
export function claudeCodeUserId(value: string): { user: string; session: string } | null {
  if (value.startsWith("{")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      return null;
    }
    const fields = asObject(parsed);
    const device = asString(fields?.device_id);
    const session = asString(fields?.session_id);
    if (!device || session === null) return null;
    return { user: asString(fields?.account_uuid) || device, session };
  }
  const legacy = legacyClaudeCode.exec(value);
  return legacy ? { user: legacy[2] || legacy[1]!, session: legacy[3]! } : null;
}
