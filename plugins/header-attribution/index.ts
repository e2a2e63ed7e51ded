/**
 * `headerAttribution()`: attribution from the caller's headers (recorded as `asserted`):
 * X-Agent-ID, X-User-ID, X-Task-Context, X-Session-ID, X-Parent-Agent-ID and W3C `traceparent`.
 * The user falls back to the OpenAI body field `user` or Anthropic `metadata.user_id`.
 */
import { ProxyError, asObject, asString, definePlugin, type Attribution } from "agent-attr";
import { z } from "zod";
import { parseOptions } from "../options.ts";

const optionsSchema = z
  .object({
    /** Longest accepted identifier (agent, user, session, parent agent). */
    maxIdLength: z.number().int().positive().default(256),
    /** Longest accepted task context. */
    maxTaskLength: z.number().int().positive().default(2048),
  })
  .strict();

const traceparent = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

export function headerAttribution(options: z.input<typeof optionsSchema> = {}) {
  const opts = parseOptions("header-attribution", optionsSchema, options);
  const read = (headers: Headers, name: string, max: number): string | null => {
    const value = headers.get(name)?.trim();
    if (!value) return null;
    if (value.length > max) {
      throw new ProxyError("invalid_attribution", `Header ${name} is longer than ${max} characters.`);
    }
    return value;
  };
  // Never cut short: a truncated id would be recorded under a name its owner cannot erase.
  const fromBody = (value: string | null, field: string): string | null => {
    const id = value?.trim();
    if (!id) return null;
    if (id.length > opts.maxIdLength) {
      throw new ProxyError("invalid_attribution", `The body field ${field} is longer than ${opts.maxIdLength} characters; send a shorter user id, or the X-User-ID header.`);
    }
    return id;
  };
  return definePlugin({
    name: "header-attribution",
    attribute(ctx): Partial<Attribution> {
      const h = ctx.request.headers;
      const bodyUser =
        ctx.endpoint.wire === "anthropic" ? asString(asObject(ctx.body?.metadata)?.user_id) : asString(ctx.body?.user);
      const agent = read(h, "x-agent-id", opts.maxIdLength);
      const user = read(h, "x-user-id", opts.maxIdLength) ?? fromBody(bodyUser, ctx.endpoint.wire === "anthropic" ? "metadata.user_id" : "user");
      const task = read(h, "x-task-context", opts.maxTaskLength);
      const trace = traceparent.exec(h.get("traceparent")?.trim().toLowerCase() ?? "")?.[1] ?? null;
      return {
        agent_id: agent,
        user_id: user,
        task_context: task,
        session_id: read(h, "x-session-id", opts.maxIdLength),
        parent_agent_id: read(h, "x-parent-agent-id", opts.maxIdLength),
        trace_id: trace,
        attribution: agent || user || task ? "asserted" : undefined,
      };
    },
  });
}
