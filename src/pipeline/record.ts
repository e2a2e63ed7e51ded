/** Building audit records from a call's context. */
import { noUsage, type AuditRecord } from "../trail/record.ts";
import { errorMessage } from "../errors.ts";
import { splitTags, tagsJSON, type Tags } from "../tags.ts";
import type { CallContext } from "./context.ts";
import type { Runtime } from "./runtime.ts";

/** The in-flight record of a call: everything known before the upstream answers. */
export function newRecord(ctx: CallContext, provider: string | null, rt: Runtime): AuditRecord {
  const a = ctx.attribution;
  return {
    id: ctx.id,
    seq: 0, // assigned by the store
    timestamp: new Date(ctx.startedAt).toISOString(),
    duration_ms: null,
    ttfb_ms: null,
    agent_id: a.agent_id,
    user_id: a.user_id,
    task_context: a.task_context,
    session_id: a.session_id,
    parent_agent_id: a.parent_agent_id,
    trace_id: a.trace_id,
    attribution: a.attribution,
    key_id: ctx.principal?.keyId ?? null,
    provider,
    endpoint: ctx.endpoint.path,
    model: ctx.model,
    response_model: null,
    stream: ctx.stream,
    status: null,
    outcome: null,
    ...noUsage,
    usage_source: "none",
    cost_usd: null,
    cost_nano_usd: null,
    price_source: null,
    prompt_hash: ctx.rawBody ? keyedHash(rt.hashKey, ctx.rawBody) : null,
    response_hash: null,
    error_type: ctx.limitFlag ?? null,
    delegation: ctx.delegation ?? null,
    ...recordTags(a.tags, rt),
    consent_id: ctx.consent?.consent_id ?? null,
    purpose: ctx.consent?.purpose ?? null,
    lawful_basis: ctx.consent?.lawful_basis ?? null,
    consent_source: ctx.consent?.consent_source ?? null,
  };
}

/** A call's tags as the record keeps them: clear ones in the hash, personal ones (`tags.personal`) behind the commitment. */
function recordTags(tags: Tags, rt: Runtime): Pick<AuditRecord, "tags" | "personal_tags"> {
  if (rt.tags.personalSet.size === 0) return { tags: tagsJSON(tags), personal_tags: null };
  const split = splitTags(tags, rt.tags.personalSet);
  return { tags: tagsJSON(split.clear), personal_tags: tagsJSON(split.personal) };
}

/** HMAC-SHA256 with the instance secret, hex: comparable across records, useless without the key. */
export function keyedHash(key: Uint8Array, data: Uint8Array): string {
  return new Bun.CryptoHasher("sha256", key).update(data).digest("hex");
}

/**
 * Hands a final record to the primary store. Resolves (or returns nothing) once the store holds it
 * durably — a call's last byte waits for this. A failure is logged loudly, never thrown. Secondary
 * sinks get the record once the store has committed it (./sinks.ts).
 */
export function writeRecord(record: AuditRecord, rt: Runtime): Promise<void> | undefined {
  try {
    const pending = rt.store.commit(record);
    if (pending)
      return pending.catch((error) =>
        rt.log.error(`the audit store could not take the final record of call ${record.id}: ${errorMessage(error)}`),
      );
  } catch (error) {
    rt.log.error(`the audit store could not take the final record of call ${record.id}: ${errorMessage(error)}`);
  }
  return undefined;
}

export function elapsed(ctx: Pick<CallContext, "startedPerf">): number {
  return Math.round((performance.now() - ctx.startedPerf) * 1000) / 1000;
}
