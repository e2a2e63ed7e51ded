/**
 * Tags: key=value attribution dimensions beside the fixed ones (team, project, cost centre…).
 *
 * - Header scheme: one header per tag, `X-Attr-Tag-<Key>: <value>` (`X-Attr-Tag-Team: platform`,
 *   `X-Attr-Tag-Cost-Center: cc-42`), read by `headerAttribution()` and never sent upstream (every
 *   `x-attr-tag-*` header is stripped before forwarding). Plugins add tags from `attribute`
 *   (`{ tags: { team: "platform" } }`), merged key by key in plugin order.
 * - Keys are case-insensitive like header names: stored lower-case, with `_` read as `-` (many
 *   proxies drop header names holding `_`), so `Cost_Center`, `cost-center` and `COST-CENTER` are
 *   one key. A key is 1–64 of `a-z 0-9 -`, starting with a letter or digit.
 * - Values follow the identifier policy (../identifiers.ts: UTF-8, NFC, no invisible characters, no
 *   comma from a header), at most `maxValueLength` long; an empty value is no tag.
 * - At most `maxTags` per call, after merging. A call beyond any bound is refused with 400
 *   `invalid_attribution` naming the tag.
 * - Stored as canonical JSON (keys sorted), so equal tags hash alike (record hash v3).
 */
import { z } from "zod";
import { ProxyError } from "./errors.ts";
import { checkIdentifier } from "./identifiers.ts";

/** Inbound headers with this prefix carry tags. */
export const tagHeaderPrefix = "x-attr-tag-";

export type Tags = Readonly<Record<string, string>>;

export const tagLimitsSchema = z
  .object({
    /** Most tags one call may carry (headers and plugins together). */
    maxTags: z.number().int().positive().max(256).default(16),
    /** Longest accepted tag value. */
    maxValueLength: z.number().int().positive().max(4096).default(256),
    /**
     * Tags whose values name or identify people (e.g. `email`, `employee`): recorded behind the
     * salted commitment (`personal_tags`), so `audit delete --user` erases them with the user's
     * other personal fields and verify still passes. Other tags are clear, in the hashed bytes.
     */
    personal: z.array(z.string()).default([]),
  })
  .strict();
export type TagLimits = z.output<typeof tagLimitsSchema>;
export const defaultTagLimits: TagLimits = tagLimitsSchema.parse({});

const keyPattern = /^[a-z0-9][a-z0-9-]{0,63}$/;

/** A tag key as stored (lower-case, `_` as `-`), or null when it is not a valid key. */
export function tagKey(raw: string): string | null {
  const key = raw.trim().toLowerCase().replaceAll("_", "-");
  return keyPattern.test(key) ? key : null;
}

/** `tagKey`, refusing an invalid key with 400 naming where it came from. */
export function checkTagKey(raw: string, where: string): string {
  const key = tagKey(raw);
  if (key === null)
    throw new ProxyError(
      "invalid_attribution",
      `${where}: the tag key '${raw.slice(0, 80)}' is not valid. A tag key is 1-64 characters of a-z, 0-9 and '-' (or '_'), starting with a letter or digit.`,
    );
  return key;
}

/**
 * Tags held to the rules: keys normalised, values checked, at most `maxTags`. `where` names the
 * source in errors (`Header x-attr-tag-team`, `The plugin tags`). Returns a new object, keys sorted.
 */
export function checkTags(
  tags: Readonly<Record<string, unknown>>,
  limits: TagLimits,
  where: (key: string) => string,
): Record<string, string> {
  const checked: Record<string, string> = {};
  for (const [raw, value] of Object.entries(tags)) {
    const key = checkTagKey(raw, where(raw));
    if (typeof value !== "string")
      throw new ProxyError("invalid_attribution", `${where(raw)}: the value of tag '${key}' must be a string.`);
    const text = checkIdentifier(value, { where: where(raw), max: limits.maxValueLength });
    if (text !== null) checked[key] = text;
  }
  const count = Object.keys(checked).length;
  if (count > limits.maxTags)
    throw new ProxyError(
      "invalid_attribution",
      `The call carries ${count} tags; at most ${limits.maxTags} are accepted (tags.maxTags in the config). Send fewer X-Attr-Tag-* headers.`,
    );
  return sortedTags(checked);
}

/** The same tags with keys in code-point order (how they are stored and hashed). */
export function sortedTags(tags: Tags): Record<string, string> {
  const sorted: Record<string, string> = {};
  for (const key of Object.keys(tags).sort()) sorted[key] = tags[key]!;
  return sorted;
}

/** Canonical JSON of tags (keys sorted), or null for none: the record's `tags` / `personal_tags`. */
export function tagsJSON(tags: Tags): string | null {
  const keys = Object.keys(tags);
  return keys.length === 0 ? null : JSON.stringify(sortedTags(tags));
}

/** A record's `tags` / `personal_tags` JSON back to an object ({} for null or unreadable text). */
export function parseTags(json: string | null | undefined): Record<string, string> {
  if (!json) return {};
  try {
    const value = JSON.parse(json) as unknown;
    if (value === null || typeof value !== "object" || Array.isArray(value)) return {};
    return Object.fromEntries(Object.entries(value).filter((entry): entry is [string, string] => typeof entry[1] === "string"));
  } catch {
    return {};
  }
}

/** Splits a call's tags into the clear and the personal ones (`tags.personal`). */
export function splitTags(tags: Tags, personal: ReadonlySet<string>): { clear: Tags; personal: Tags } {
  const clear: Record<string, string> = {};
  const hidden: Record<string, string> = {};
  for (const [key, value] of Object.entries(tags)) (personal.has(key) ? hidden : clear)[key] = value;
  return { clear, personal: hidden };
}

/** `key=value` as the CLI takes it (`--tag team=platform`), as a checked pair. */
export function parseTagPair(pair: string, limits: TagLimits = defaultTagLimits): [string, string] {
  const at = pair.indexOf("=");
  if (at <= 0) throw new ProxyError("invalid_attribution", `'${pair}' is not a tag: write KEY=VALUE, e.g. team=platform.`);
  const key = checkTagKey(pair.slice(0, at), `The tag '${pair}'`);
  const value = checkIdentifier(pair.slice(at + 1), { where: `The tag '${pair}'`, max: limits.maxValueLength });
  if (value === null) throw new ProxyError("invalid_attribution", `The tag '${pair}' has no value: write KEY=VALUE, e.g. team=platform.`);
  return [key, value];
}

/** Tags as an API schema (keys stored, values checked), e.g. the tags a proxy key fixes. */
export const tagsSchema = z.record(z.string(), z.string()).transform((tags, ctx) => {
  try {
    return checkTags(tags, { ...defaultTagLimits, maxTags: 64 }, (key) => `The tag '${key}'`);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: error instanceof Error ? error.message : String(error) });
    return z.NEVER;
  }
});
