/**
 * Stage 6 for one upstream response: the body goes to the client untouched while the provider's
 * meter reads usage from it; when it ends (done, upstream failure or client cancel) ./finalize.ts
 * runs stages 7-9. Accounting code is guarded: nothing here can throw into the client's stream.
 */
import type { AuditRecord } from "../audit/record.ts";
import { ProxyError, errorMessage } from "../errors.ts";
import type { ProviderAdapter } from "../plugin.ts";
import { SSEParser, parseJSON, type SSEEvent } from "../proxy/sse.ts";
import { SSEEventFilter } from "../proxy/sse-filter.ts";
import { firstStringMember, lastObjectMember } from "../proxy/json-peek.ts";
import { tapStream, type StreamEnd } from "../proxy/tap.ts";
import type { CallContext, Meter } from "./context.ts";
import { finalize } from "./finalize.ts";
import { elapsed } from "./record.ts";
import { trackUntilDone, type Runtime } from "./runtime.ts";

/** Non-streamed bodies up to this size are metered (and, when their length is declared, read whole). */
const maxBufferedBytes = 16 * 1024 * 1024;

const utf8 = new TextDecoder();

export interface ReplyContext {
  ctx: CallContext;
  provider: { plugin: string; adapter: ProviderAdapter };
  upstream: Response;
  /** The in-flight record to complete. */
  record: AuditRecord;
  /** Aborts the upstream call (client gone, deadline passed). */
  abort: AbortController;
  /** Stream events the proxy caused and the client did not ask for (see PreparedBody). */
  hideEvent?: (event: SSEEvent) => boolean;
  rt: Runtime;
  /**
   * Ends the upstream's time-to-headers deadline. A body of known length stays under that
   * deadline until read; anything streamed switches to the idle timeout between chunks.
   */
  headersArrived: () => void;
  /** Called once when the response has ended, however it ended. */
  cleanup: () => void;
}

/**
 * The body to send the client. Server-sent events stream through as they arrive. A JSON answer of
 * declared length is read whole first — it is one piece for the client either way, and that spares
 * a JavaScript stream per call; any other body streams through like events do.
 */
export async function replyBody(reply: ReplyContext): Promise<ReadableStream<Uint8Array> | Uint8Array | null> {
  const { upstream } = reply;
  const sse = upstream.headers.get("content-type")?.includes("text/event-stream") ?? false;
  // The call's record is not written until its response ends: shutdown waits for it.
  const track = Promise.withResolvers<void>();
  trackUntilDone(reply.rt, track.promise);
  const meter = guardedMeter(reply);
  const hasher = new Bun.CryptoHasher("sha256", reply.rt.hashKey);
  let idle: { arm(): void; stop(): void } | null = null;
  const streamed = () => {
    reply.headersArrived();
    idle = idleTimer(reply);
    return idle;
  };
  let ttfb: number | null = null;
  const finish = (how: StreamEnd, body?: Uint8Array, edges?: Record<string, unknown> | null) => {
    idle?.stop();
    reply.cleanup();
    if (body) meter.json(parseJSON(utf8.decode(body)));
    else if (edges) meter.json(edges);
    void finalize(reply, how, meter.result(), ttfb, hasher.digest("hex")).finally(track.resolve);
  };
  if (!upstream.body) {
    finish({ kind: "done" });
    return null;
  }
  if (sse) {
    const observer = sseObserver(meter, hasher, streamed(), () => (ttfb ??= elapsed(reply.ctx)), finish);
    const filter = reply.hideEvent ? new SSEEventFilter(reply.hideEvent) : undefined;
    return tapStream(upstream.body.getReader(), observer, filter);
  }
  const declared = Number(upstream.headers.get("content-length") ?? Number.NaN);
  if (declared >= 0 && declared <= maxBufferedBytes && !upstream.headers.has("content-encoding")) {
    // The usual JSON answer: its length is known, so read it natively in one go.
    let body: Uint8Array;
    try {
      body = await upstream.bytes();
    } catch (error) {
      finish({ kind: "upstream_error", error });
      throw error;
    }
    ttfb = elapsed(reply.ctx);
    hasher.update(body);
    finish({ kind: "done" }, body);
    return body;
  }
  // Length unknown (chunked, encoded) or over the cap: pass it on as it comes, keep it for metering
  // up to the cap; past the cap keep only its head and tail, where the model and usage are.
  const quiet = streamed();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const tail: Uint8Array[] = [];
  let tailSize = 0;
  return tapStream(upstream.body.getReader(), {
    chunk(bytes) {
      ttfb ??= elapsed(reply.ctx);
      quiet.arm();
      hasher.update(bytes);
      size += bytes.byteLength;
      if (size <= maxBufferedBytes) chunks.push(bytes);
      else {
        tail.push(bytes);
        tailSize += bytes.byteLength;
        while (tail.length > 1 && tailSize - tail[0]!.byteLength >= tailBytes) tailSize -= tail.shift()!.byteLength;
      }
    },
    end(how) {
      if (size <= maxBufferedBytes) return finish(how, chunks.length > 0 ? Buffer.concat(chunks) : undefined);
      finish(how, undefined, edgesOf(chunks[0] ?? new Uint8Array(), Buffer.concat(tail)));
    },
  });
}

/** How much of the end of an over-cap body is kept to find its usage. */
const tailBytes = 256 * 1024;

/** What metering can learn from the edges of an over-cap JSON body: its model and usage. */
function edgesOf(head: Uint8Array, tail: Uint8Array): Record<string, unknown> | null {
  const model = firstStringMember(utf8.decode(head.subarray(0, 64 * 1024)), "model");
  const usage = lastObjectMember(utf8.decode(tail), "usage");
  return usage ? { ...(model ? { model } : {}), usage } : null;
}

function sseObserver(
  meter: Meter,
  hasher: Bun.CryptoHasher,
  idle: { arm(): void },
  firstByte: () => void,
  finish: (how: StreamEnd) => void,
) {
  const parser = new SSEParser();
  return {
    chunk(bytes: Uint8Array) {
      firstByte();
      idle.arm();
      hasher.update(bytes);
      for (const event of parser.push(bytes)) meter.event(event);
    },
    end(how: StreamEnd) {
      for (const event of parser.end()) meter.event(event);
      finish(how);
    },
  };
}

/** Aborts the upstream call when its body goes quiet for longer than `streamIdleTimeoutMs`. */
function idleTimer({ abort, rt }: ReplyContext) {
  const ms = rt.limits.streamIdleTimeoutMs;
  let timer: Timer | undefined;
  const fire = () => abort.abort(new ProxyError("upstream_timeout", `The upstream sent nothing for ${ms} ms.`));
  const arm = () => {
    if (ms <= 0) return;
    if (timer) timer.refresh();
    else timer = setTimeout(fire, ms);
  };
  arm();
  return { arm, stop: () => clearTimeout(timer) };
}

/** A meter whose failures are logged once and never reach the stream. */
function guardedMeter({ provider, ctx, rt }: ReplyContext): Meter {
  let failed = false;
  const fail = (hook: string, error: unknown) => {
    if (!failed) rt.log.error(`[plugin ${provider.plugin}] ${hook}: ${errorMessage(error)} (call ${ctx.id})`);
    failed = true;
  };
  let inner: Meter | null = null;
  try {
    inner = provider.adapter.meter(ctx.endpoint);
  } catch (error) {
    fail("provider.meter", error);
  }
  return {
    event(event) {
      if (inner && !failed) {
        try {
          inner.event(event);
        } catch (error) {
          fail("meter.event", error);
        }
      }
    },
    json(body) {
      if (inner && !failed) {
        try {
          inner.json(body);
        } catch (error) {
          fail("meter.json", error);
        }
      }
    },
    result() {
      try {
        if (inner) return inner.result();
      } catch (error) {
        fail("meter.result", error);
      }
      return { usage: null, responseModel: null, terminal: false, errorType: null };
    },
  };
}
