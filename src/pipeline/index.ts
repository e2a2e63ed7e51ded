/**
 * The request pipeline: every proxied call runs these stages, in this order.
 *
 * | # | stage        | plugin hook          | runs                          | output                                   |
 * |---|--------------|----------------------|-------------------------------|------------------------------------------|
 * | 1 | route        | provider.match       | first match wins              | endpoint + provider adapter              |
 * | 2 | authenticate | authenticate         | first non-null wins           | principal or anonymous                   |
 * | 3 | attribute    | attribute            | all, merged in order          | agent/user/task/session/trace            |
 * | 4 | limit        | limit.check          | in order; first denial stops  | allow, or 429/402 with headers           |
 * | 5 | forward      | provider.forward     | the routed adapter            | upstream Response (streamed)             |
 * | 6 | meter        | provider.meter       | as bytes pass through         | normalised usage, response model         |
 * | 7 | price        | price                | first non-null wins           | cost + price source                      |
 * | 8 | record       | auditStore, audit    | the store; then every sink    | durable audit record, chained            |
 * | 9 | settle       | limit.settle         | after the response ends       | limiter reconciled with real usage       |
 *
 * After stage 3, a call with a principal has its claimed identity held to what the principal
 * verified (./identity.ts: 403, or the claim kept in `delegation`), and from then on its own
 * credential is never sent upstream. Stage 9 also runs for calls refused or failed after stage 4.
 *
 * Before forwarding (stage 5) the primary store durably holds an in-flight record (`store.begin`),
 * so a call that reaches an upstream always leaves a record, even if the process is killed.
 * The runner knows nothing about Elysia: it takes a Request and returns a Response.
 */
import { noUsage, type AuditRecord } from "../trail/record.ts";
import { ProxyError, errorMessage, toWireError } from "../errors.ts";
import { PluginError, type LimitStage, type ProviderAdapter } from "../plugin.ts";
import { readBody } from "../proxy/body.ts";
import { clientResponseHeaders, upstreamRequestHeaders } from "../proxy/headers.ts";
import type { SSEEvent } from "../proxy/sse.ts";
import { emptyAttribution, type Attribution, type CallContext, type Endpoint } from "./context.ts";
import { verifyIdentity } from "./identity.ts";
import { finalizeBeforeResponse, settle } from "./finalize.ts";
import { outputLimitFields } from "./endpoints.ts";
import { priceUsage } from "./price.ts";
import { replyBody } from "./respond.ts";
import { elapsed, newRecord, writeRecord } from "./record.ts";
import { trackUntilDone, type Runtime } from "./runtime.ts";
import { callHookSync, runFirst, runMerge, runSequential } from "./hooks.ts";

export async function runCall(request: Request, endpoint: Endpoint, rt: Runtime): Promise<Response> {
  const base = {
    id: Bun.randomUUIDv7(),
    startedAt: Date.now(),
    startedPerf: performance.now(),
    request,
    endpoint,
    rawBody: null,
    body: null,
    model: null,
    stream: false,
    principal: null,
    attribution: emptyAttribution,
  };
  let ctx: CallContext = base;
  let providerName: string | null = null;
  try {
    if (request.method !== endpoint.method) {
      throw new ProxyError("method_not_allowed", `${endpoint.path} accepts ${endpoint.method}, not ${request.method}.`, {
        allow: endpoint.method,
      });
    }
    const { rawBody, body } = await readJSONBody(request, endpoint, rt);
    const model = typeof body?.model === "string" ? body.model : null;
    ctx = { ...base, rawBody, body, model, stream: body?.stream === true };
    if (endpoint.method === "POST" && model === null) {
      throw new ProxyError("missing_model", "The request body must have a string field `model`.");
    }
    const provider = route(endpoint, model, rt); //                                  1 route
    providerName = provider.plugin;
    ctx.principal = await authenticate(ctx, rt); //                                  2 authenticate
    ctx.attribution = await attribute(ctx, rt); //                                   3 attribute
    if (ctx.principal) {
      const verified = verifyIdentity(ctx.attribution, ctx.principal);
      ctx.attribution = verified.attribution;
      ctx.delegation = verified.delegation;
      ctx.unverified = verified.unverified;
    }
    await checkLimits(ctx, provider, rt); //                                         4 limit
    return await forward(ctx, provider, rt); //                                      5-9
  } catch (error) {
    return reject(error, ctx, providerName, rt);
  }
}

const utf8 = new TextDecoder();

async function readJSONBody(request: Request, endpoint: Endpoint, rt: Runtime) {
  if (endpoint.method === "GET") return { rawBody: null, body: null };
  const rawBody = await readBody(request, rt.limits.maxBodyBytes);
  let body: unknown;
  try {
    body = JSON.parse(utf8.decode(rawBody));
  } catch {
    throw new ProxyError("invalid_json", "The request body is not valid JSON.");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new ProxyError("invalid_body", "The request body must be a JSON object.");
  }
  return { rawBody, body: body as Record<string, unknown> };
}

function route(endpoint: Endpoint, model: string | null, rt: Runtime): { plugin: string; adapter: ProviderAdapter } {
  for (const provider of rt.providers) {
    if (callHookSync(provider.plugin, "provider.match", () => provider.adapter.match(endpoint, model))) return provider;
  }
  throw new ProxyError(
    "no_provider",
    model
      ? `No configured provider serves model '${model}' on ${endpoint.path}; add a provider whose models match it.`
      : `No configured provider serves ${endpoint.path}.`,
  );
}

async function authenticate(ctx: CallContext, rt: Runtime) {
  const found = await runFirst(rt.plugins, "authenticate", (plugin) => plugin.authenticate && (() => plugin.authenticate!(ctx)), "refuse");
  return found?.value ?? null;
}


function attribute(ctx: CallContext, rt: Runtime): Promise<Attribution> {
  return runMerge(
    rt.plugins,
    "attribute",
    emptyAttribution,
    (plugin, merged) => plugin.attribute && (() => plugin.attribute!({ ...ctx, attribution: merged })),
    "refuse",
  );
}

async function checkLimits(ctx: CallContext, provider: { plugin: string; adapter: ProviderAdapter }, rt: Runtime): Promise<void> {
  const stage: LimitStage = {
    capOutput(maxTokens) {
      if (Number.isInteger(maxTokens) && maxTokens > 0) ctx.outputCap = Math.min(ctx.outputCap ?? maxTokens, maxTokens);
    },
    price: (usage) => priceUsage(ctx, provider, usage, null, rt),
  };
  await runSequential(
    rt.plugins,
    "limit.check",
    (plugin) =>
      plugin.limit &&
      (async () => {
        const verdict = await plugin.limit!.check(ctx, stage);
        if (verdict?.flag) ctx.limitFlag ??= verdict.flag;
      }),
    "refuse",
  );
}

async function forward(ctx: CallContext, provider: { plugin: string; adapter: ProviderAdapter }, rt: Runtime) {
  const { body: upstreamBody, hideEvent } = prepareBody(ctx, provider);
  const record = newRecord(ctx, provider.plugin, rt);
  await beginRecord(record, rt); //                                                  8 record (intent)
  rt.metrics.started();

  const abort = new AbortController();
  const onClientAbort = () => abort.abort(new ProxyError("internal_error", "client disconnected"));
  ctx.request.signal.addEventListener("abort", onClientAbort, { once: true });
  const deadline = setTimeout(
    () => abort.abort(new ProxyError("upstream_timeout", `The upstream did not answer within ${rt.limits.upstreamTimeoutMs} ms.`)),
    rt.limits.upstreamTimeoutMs,
  );
  const cleanup = () => {
    clearTimeout(deadline);
    ctx.request.signal.removeEventListener("abort", onClientAbort);
  };
  const headers = upstreamRequestHeaders(ctx.request.headers, rt.neverUpstream);
  if (ctx.principal) {
    // The caller authenticated to the proxy: its credential is the proxy's, never the provider's.
    headers.delete("authorization");
    headers.delete("x-api-key");
  }
  let upstream: Response;
  try {
    upstream = await provider.adapter.forward({ ctx, headers, body: upstreamBody, signal: abort.signal }); // 5 forward
  } catch (error) {
    cleanup();
    const clientGone = ctx.request.signal.aborted;
    const failure = upstreamFailure(error, abort.signal, provider.plugin);
    const final: AuditRecord = {
      ...record,
      outcome: clientGone ? "client_aborted" : "upstream_error",
      status: clientGone ? null : failure.status,
      duration_ms: elapsed(ctx),
      error_type: clientGone ? "client_aborted" : failure.code,
    };
    trackUntilDone(rt, finalizeBeforeResponse(ctx, final, provider, rt)); //          7-9
    return toWireError(failure, ctx.endpoint.wire, { "x-audit-record-id": ctx.id });
  }
  let body: Awaited<ReturnType<typeof replyBody>>;
  try {
    const headersArrived = () => clearTimeout(deadline);
    body = await replyBody({ ctx, provider, upstream, record, abort, rt, hideEvent, headersArrived, cleanup }); // 6-9
  } catch (error) {
    // The upstream failed while sending a (non-streamed) body: nothing has reached the client yet.
    return toWireError(upstreamFailure(error, abort.signal, provider.plugin), ctx.endpoint.wire, {
      "x-audit-record-id": ctx.id,
    });
  }
  try {
    const responseHeaders = clientResponseHeaders(upstream.headers);
    responseHeaders.set("x-audit-record-id", ctx.id);
    return new Response(body, { status: upstream.status, statusText: upstream.statusText, headers: responseHeaders });
  } catch (error) {
    // The call has its record already (or a stream that records when it ends): answer the client
    // without going through reject(), which would write a second record for the same call.
    if (body instanceof ReadableStream) body.cancel().catch(() => {});
    const failure = new ProxyError("internal_error", `Internal error passing the upstream's answer on: ${errorMessage(error)}`);
    rt.log.error(`call ${ctx.id}: ${failure.message}`);
    return toWireError(failure, ctx.endpoint.wire, { "x-audit-record-id": ctx.id });
  }
}

function prepareBody(ctx: CallContext, provider: { plugin: string; adapter: ProviderAdapter }): {
  body: Uint8Array | null;
  hideEvent?: (event: SSEEvent) => boolean;
} {
  if (!ctx.body) return { body: ctx.rawBody };
  const adapter = provider.adapter;
  const prepared = adapter.prepareBody ? callHookSync(provider.plugin, "provider.prepareBody", () => adapter.prepareBody!(ctx.endpoint, ctx.body!)) : null;
  const capped = capOutput(ctx, prepared?.body ?? ctx.body, provider);
  if (!prepared && !capped) return { body: ctx.rawBody };
  return { body: new TextEncoder().encode(JSON.stringify(capped ?? prepared!.body)), hideEvent: prepared?.hideEvent };
}

/** The body with the output cap a limit plugin asked for, when the request sets no limit itself. */
function capOutput(ctx: CallContext, body: Record<string, unknown>, provider: { plugin: string; adapter: ProviderAdapter }) {
  if (ctx.outputCap === undefined || outputLimitFields.some((field) => body[field] !== undefined && body[field] !== null)) return null;
  const field = provider.adapter.outputLimitField ? callHookSync(provider.plugin, "provider.outputLimitField", () => provider.adapter.outputLimitField!(ctx.endpoint)) : null;
  return field ? { ...body, [field]: ctx.outputCap } : null;
}

function upstreamFailure(error: unknown, signal: AbortSignal, plugin: string): ProxyError {
  if (signal.aborted && signal.reason instanceof ProxyError) return signal.reason;
  if (error instanceof ProxyError) return error;
  if (error instanceof PluginError) return new ProxyError("plugin_error", error.message);
  return new ProxyError(
    "upstream_unreachable",
    `Could not reach the upstream of provider '${plugin}': ${errorMessage(error)}. Check its base URL and that it is running.`,
  );
}

async function beginRecord(record: AuditRecord, rt: Runtime): Promise<void> {
  try {
    await rt.store.begin(record);
  } catch (error) {
    rt.log.error(`the audit store cannot hold call ${record.id} before it is forwarded: ${errorMessage(error)}`);
    if (rt.failClosed) {
      throw new ProxyError(
        "audit_unavailable",
        "The audit log cannot be written, so the call was not forwarded. An operator must check the audit database (disk space, permissions, locks).",
      );
    }
  }
}

async function reject(error: unknown, ctx: CallContext, provider: string | null, rt: Runtime): Promise<Response> {
  const failure =
    error instanceof ProxyError
      ? error
      : error instanceof PluginError
        ? new ProxyError("plugin_error", error.message)
        : new ProxyError("internal_error", `Internal error: ${errorMessage(error)}`);
  if (!(error instanceof ProxyError)) rt.log.error(failure.message);
  // A call refused before stage 3 is still attributed, so refusals show up under their agent.
  if (ctx.attribution === emptyAttribution) {
    ctx.attribution = await attribute(ctx, rt).catch(() => emptyAttribution);
  }
  const final: AuditRecord = {
    ...newRecord(ctx, provider, rt),
    outcome: "rejected",
    status: failure.status,
    duration_ms: elapsed(ctx),
    error_type: failure.code,
    ...noUsage,
    usage_source: "none",
  };
  writeRecord(final, rt);
  // A limiter that reserved before a later stage refused the call gives the reservation back.
  void settle(ctx, final, rt);
  return toWireError(failure, ctx.endpoint.wire, { "x-audit-record-id": ctx.id });
}
