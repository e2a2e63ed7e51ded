/**
 * `headerAttribution()`: attribution from the caller's headers (recorded as `asserted`):
 * X-Agent-ID, X-User-ID, X-Task-Context, X-Session-ID, X-Parent-Agent-ID, W3C `traceparent`, and
 * tags as one header each, `X-Attr-Tag-<Key>: value` (key lower-cased, `_` as `-`: see `checkTagKey`).
 * The user falls back to the OpenAI body field `user` or Anthropic `metadata.user_id` (Claude
 * Code's value there gives its stable user and its session: see `bodyIdentity`). Every value is
 * held to the identifier policy (`checkIdentifier`): UTF-8, NFC, no invisible characters.
 */
import {
  bodyIdentity,
  checkIdentifier,
  checkTagKey,
  definePlugin,
  ProxyError,
  headerText,
  tagHeaderPrefix,
  type Attribution,
  type ClaimSources,
  type IdentifierRule,
  parseOptions,
} from "agent-attr";
import { z } from "zod";

const optionsSchema = z
  .object({
    /** Longest accepted identifier (agent, user, session, parent agent). */
    maxIdLength: z.number().int().positive().default(256),
    /** Longest accepted task context. */
    maxTaskLength: z.number().int().positive().default(2048),
  })
  .strict();

/** The headers it reads: for the proxy alone, never sent upstream. */
const inboundHeaders = ["x-agent-id", "x-user-id", "x-task-context", "x-session-id", "x-parent-agent-id", "traceparent", "tracestate"];

const traceparent = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

export function headerAttribution(options: z.input<typeof optionsSchema> = {}) {
  const opts = parseOptions("header-attribution", optionsSchema, options);
  // The rules per header, made once: attribute runs on every call.
  const idRule = (name: string) => ({ where: `Header ${name}`, max: opts.maxIdLength, header: true });
  const rules = {
    agent: idRule("x-agent-id"),
    user: idRule("x-user-id"),
    session: idRule("x-session-id"),
    parent: idRule("x-parent-agent-id"),
    task: { where: "Header x-task-context", max: opts.maxTaskLength, header: true, text: true },
  };
  const fromHeader = (headers: Headers, name: string, rule: IdentifierRule) => checkIdentifier(headerText(headers, name), rule);
  return definePlugin({
    name: "header-attribution",
    inboundHeaders,
    attribute(ctx): Partial<Attribution> {
      const h = ctx.request.headers;
      const agent = fromHeader(h, "x-agent-id", rules.agent);
      const task = fromHeader(h, "x-task-context", rules.task);
      const body = bodyIdentity(ctx.body, ctx.endpoint);
      const fromBody = (value: string | null) => checkIdentifier(value, { where: `The body field ${body!.field}`, max: opts.maxIdLength });
      const headerUser = fromHeader(h, "x-user-id", rules.user);
      const user = headerUser ?? (body ? fromBody(body.user) : null);
      const traceHeader = h.get("traceparent");
      const trace = traceHeader === null ? null : (traceparent.exec(traceHeader.trim().toLowerCase())?.[1] ?? null);
      const sources: { -readonly [F in keyof ClaimSources]: ClaimSources[F] } = {};
      if (agent) sources.agent_id = { header: "X-Agent-ID" };
      if (headerUser) sources.user_id = { header: "X-User-ID" };
      else if (user) sources.user_id = { body: body!.field };
      if (task) sources.task_context = { header: "X-Task-Context" };
      return {
        sources,
        agent_id: agent,
        user_id: user,
        task_context: task,
        session_id: fromHeader(h, "x-session-id", rules.session) ?? (body?.session ? fromBody(body.session) : null),
        parent_agent_id: fromHeader(h, "x-parent-agent-id", rules.parent),
        trace_id: trace,
        tags: headerTags(h),
        attribution: agent || user || task ? "asserted" : undefined,
      };
    },
  });
}

/** The `X-Attr-Tag-<Key>` headers as tags (values held to the identifier policy; bounds are the core's). */
function headerTags(headers: Headers): Record<string, string> {
  let tags: Record<string, string> | undefined;
  for (const name of headers.keys()) {
    if (!name.startsWith(tagHeaderPrefix)) continue;
    const where = `Header ${name}`;
    const key = checkTagKey(name.slice(tagHeaderPrefix.length), where);
    // The core bounds the length (tags.maxValueLength); this only keeps a huge header from being normalised.
    const value = checkIdentifier(headerText(headers, name), { where, max: 4096, header: true });
    if (value === null) continue;
    if ((tags ??= {})[key] !== undefined && tags[key] !== value)
      throw new ProxyError(
        "invalid_attribution",
        `${where} and another header both name the tag '${key}' with different values. Send it once.`,
      );
    tags[key] = value;
  }
  return tags ?? {};
}
