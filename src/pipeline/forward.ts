/**
 * Stage 5, forward: the intent made durable first (stage 8's begin), then the body the provider
 * asked for (its edits spliced into the client's bytes), only the credential that provider takes,
 * and the upstream call under the proxy's deadlines; its answer goes to ./respond.ts (stage 6).
 */
import type { AuditRecord } from "../trail/record.ts";
import { ProxyError, endpointError, errorMessage } from "../errors.ts";
import { PluginError, type CredentialHeader } from "../plugin.ts";
import { applyBodyEdits, type BodyEdit } from "../proxy/json-edit.ts";
import { clientResponseHeaders, upstreamRequestHeaders } from "../proxy/headers.ts";
import type { SSEEvent } from "../proxy/sse.ts";
import type { CallContext } from "./context.ts";
import { callEnding } from "./end.ts";
import { outputLimitFields } from "./endpoints.ts";
import { uploadStream } from "../proxy/body.ts";
import { replyBody } from "./respond.ts";
import { newRecord } from "./record.ts";
import { trackUntilDone, type RoutedProvider, type Runtime } from "./runtime.ts";
import { callHookSync } from "./hooks.ts";

export async function forward(ctx: CallContext, provider: RoutedProvider, rt: Runtime, releaseSlot: () => void) {
  const { body: upstreamBody, hideEvent } = prepareBody(ctx, provider, rt);
  const record = newRecord(ctx, provider.plugin, rt);
  await beginRecord(record, rt); //                                                  8 record (intent)
  const ending = callEnding(ctx, record, provider, rt);
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
    releaseSlot();
  };
  const headers = upstreamHeaders(ctx, provider, rt);
  // A body streamed through keeps its declared length (uploads are not sent chunked when they were not).
  const declared = ctx.endpoint.body === "stream" ? ctx.request.headers.get("content-length") : null;
  if (declared && upstreamBody) headers.set("content-length", declared);
  let upstream: Response;
  try {
    upstream = await provider.adapter.forward({ ctx, headers, body: upstreamBody, signal: abort.signal }); // 5 forward
  } catch (error) {
    cleanup();
    const failure = upstreamFailure(error, abort.signal, provider.plugin);
    trackUntilDone(rt, ending.finish({ kind: "failed", error: failure, clientGone: ctx.request.signal.aborted })); // 7-9
    return endpointError(failure, ctx.endpoint, { "x-audit-record-id": ctx.id });
  }
  let body: Awaited<ReturnType<typeof replyBody>>;
  try {
    const headersArrived = () => clearTimeout(deadline);
    body = await replyBody({ ctx, provider, upstream, ending, abort, rt, hideEvent, headersArrived, cleanup }); // 6-9
  } catch (error) {
    // The upstream failed while sending a (non-streamed) body: nothing has reached the client yet.
    return endpointError(upstreamFailure(error, abort.signal, provider.plugin), ctx.endpoint, {
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
    return endpointError(failure, ctx.endpoint, { "x-audit-record-id": ctx.id });
  }
}

/**
 * The bytes to send upstream: the inbound body with the provider's edits and the output cap spliced
 * in (./proxy/json-edit.ts); every other byte is the client's own.
 */
export function prepareBody(
  ctx: CallContext,
  provider: RoutedProvider,
  rt: Runtime,
): {
  body: Uint8Array | ReadableStream<Uint8Array> | null;
  hideEvent?: (event: SSEEvent) => boolean;
} {
  if (ctx.endpoint.body === "stream") return { body: uploadStream(ctx.request, rt.limits.maxUploadBytes) };
  if (!ctx.body || !ctx.rawBody) return { body: ctx.rawBody };
  const { body, rawBody } = ctx;
  const adapter = provider.adapter;
  const prepared = adapter.prepareBody
    ? callHookSync(provider.plugin, "provider.prepareBody", () => adapter.prepareBody!(ctx.endpoint, body))
    : null;
  const edits = [...(prepared?.edits ?? []), ...capOutput(ctx, body, provider)];
  if (edits.length === 0) return { body: rawBody, hideEvent: prepared?.hideEvent };
  return {
    body: callHookSync(provider.plugin, "provider.prepareBody", () => applyBodyEdits(rawBody, body, edits)),
    hideEvent: prepared?.hideEvent,
  };
}

/** The output cap a limit plugin asked for, in the provider's field, when the request sets no limit itself. */
function capOutput(ctx: CallContext, body: Record<string, unknown>, provider: RoutedProvider): BodyEdit[] {
  if (
    ctx.outputCap === undefined ||
    !ctx.endpoint.billed ||
    outputLimitFields.some((field) => body[field] !== undefined && body[field] !== null)
  )
    return [];
  const field = provider.adapter.outputLimitField
    ? callHookSync(provider.plugin, "provider.outputLimitField", () => provider.adapter.outputLimitField!(ctx.endpoint))
    : null;
  return field ? [{ path: [field], value: ctx.outputCap }] : [];
}

/** Every header a client credential travels in; a provider takes those it lists (default: the first two). */
const credentialHeaders: readonly CredentialHeader[] = ["authorization", "x-api-key", "api-key", "x-goog-api-key"];
const defaultCredentialHeaders: readonly CredentialHeader[] = ["authorization", "x-api-key"];

/**
 * The inbound headers that may go to `provider`'s upstream: never the hop-by-hop or proxy-only
 * ones, and a credential only to a provider that takes it; with a principal the caller's
 * credential is the proxy's, never a provider's.
 */
export function upstreamHeaders(ctx: CallContext, provider: RoutedProvider, rt: Runtime, drop: readonly string[] = []): Headers {
  const headers = upstreamRequestHeaders(ctx.request.headers, rt.neverUpstream);
  for (const name of drop) headers.delete(name);
  const accepted = ctx.principal ? [] : (provider.adapter.credentialHeaders ?? defaultCredentialHeaders);
  for (const name of credentialHeaders) if (!accepted.includes(name)) headers.delete(name);
  return headers;
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

export async function beginRecord(record: AuditRecord, rt: Runtime): Promise<void> {
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
