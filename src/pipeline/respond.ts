/**
 * Stage 6 for one upstream response: the body goes to the client untouched while the provider's
 * meter reads usage from it; the call's ending (./end.ts) runs stages 7-9. The final record is written before
 * the client has the whole answer — a JSON body is returned once it is written, a stream's
 * terminal event (or a chunked body's last chunk) waits for it — so a call the client saw finish
 * keeps its usage even if the proxy is killed right after. A stream that ends otherwise (upstream
 * failure, client cancel, no terminal event) is recorded when it ends. Accounting code is
 * guarded: nothing here can throw into the client's stream.
 */
import type { AuditRecord } from "../trail/record.ts";
import { ProxyError, errorMessage } from "../errors.ts";
import { SSEParser, parseJSON, type SSEEvent } from "../proxy/sse.ts";
import { SSEEventFilter } from "../proxy/sse-filter.ts";
import { firstStringMember, lastObjectMember } from "../proxy/json-peek.ts";
import { tapStream, type StreamEnd } from "../proxy/tap.ts";
import type { CallContext, Meter, MeteredResponse } from "./context.ts";
import type { CallEnd, CallEnding } from "./end.ts";
import { elapsed } from "./record.ts";
import { trackUntilDone, type RoutedProvider, type Runtime } from "./runtime.ts";

/** Non-streamed bodies up to this size are metered (and, when their length is declared, read whole). */
const maxBufferedBytes = 16 * 1024 * 1024;

const utf8 = new TextDecoder();

export interface ReplyContext {
  ctx: CallContext;
  provider: RoutedProvider;
  upstream: Response;
  /** How the call ends: its final record, then its limits settled. */
  ending: CallEnding;
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
  const sse = isEventStream(upstream.headers.get("content-type"));
  // The call's record is not written until its response ends: shutdown waits for it.
  const track = Promise.withResolvers<void>();
  trackUntilDone(reply.rt, track.promise);
  const meter = guardedMeter(reply);
  const hasher = responseHasher(reply.rt.hashKey);
  let idle: IdleTimer | null = null;
  const streamed = () => {
    reply.headersArrived();
    idle = idleTimer(reply);
    return idle;
  };
  let ttfb: number | null = null;
  const answered = (how: StreamEnd): CallEnd => ({
    kind: "answered",
    status: upstream.status,
    how,
    meter: meter.result(),
    ttfb,
    responseHash: hasher.digest(),
    signal: reply.abort.signal,
  });
  /** Writes the final record, once: when the last bytes are known, or when the response ends. */
  const record = (how: StreamEnd): Promise<AuditRecord | null> => reply.ending.record(answered(how));
  /**
   * The response has ended: the record is written (if it was not already), then limits settle.
   * Resolves once the record is written — the client's last bytes wait for that, not for settling.
   */
  const end = (callEnd: CallEnd) => {
    idle?.stop();
    reply.cleanup();
    const written = reply.ending.record(callEnd);
    void reply.ending.finish(callEnd).finally(track.resolve);
    return written;
  };
  /** `end` for an answer whose body ended as `how` says. */
  const finish = (how: StreamEnd) => end(answered(how));
  if (!upstream.body) {
    await finish({ kind: "done" });
    return null;
  }
  const firstByte = () => (ttfb ??= elapsed(reply.ctx));
  if (sse) {
    const observer = eventObserver(sseFeed(meter), meter, hasher, streamed(), firstByte, record, finish);
    const filter = reply.hideEvent ? new SSEEventFilter(reply.hideEvent) : undefined;
    return tapStream(upstream.body.getReader(), observer, filter);
  }
  if (meter.chunk && !isJSON(upstream.headers.get("content-type"))) {
    // A binary event framing the provider's meter decodes itself (e.g. AWS event streams).
    const feed = { push: (bytes: Uint8Array) => (meter.chunk!(bytes), true), end() {} };
    return tapStream(upstream.body.getReader(), eventObserver(feed, meter, hasher, streamed(), firstByte, record, finish));
  }
  const declared = Number(upstream.headers.get("content-length") ?? Number.NaN);
  if (declared >= 0 && declared <= maxBufferedBytes && !upstream.headers.has("content-encoding")) {
    // The usual JSON answer: its length is known, so read it natively in one go.
    let body: Uint8Array;
    try {
      body = await upstream.bytes();
    } catch (error) {
      const { signal } = reply.abort;
      if (signal.aborted) {
        void finish({ kind: "upstream_error", error });
        throw error; // a deadline or the client leaving: forward() answers with the signal's reason
      }
      // Nothing has reached the client: it gets a 502 saying what happened, and the record says the same.
      const failure = new ProxyError(
        "upstream_unreachable",
        `The upstream of provider '${reply.provider.plugin}' answered ${upstream.status}, but its body broke off before its end (${errorMessage(error)}).`,
      );
      void end({ kind: "failed", error: failure, clientGone: false });
      throw failure;
    }
    ttfb = elapsed(reply.ctx);
    hasher.update(body);
    meter.json(parseJSON(utf8.decode(body)));
    await finish({ kind: "done" });
    return body;
  }
  // Length unknown (chunked, encoded) or over the cap: pass it on as it comes; a JSON body (or one
  // without a type) is kept for metering up to the cap, past the cap only its head and tail, where
  // the model and usage are — anything else (audio, files) is not kept at all. The client's body
  // ends only once the final record is written.
  const quiet = streamed();
  const contentType = upstream.headers.get("content-type");
  const keep = contentType === null || isJSON(contentType);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const tail: Uint8Array[] = [];
  let tailSize = 0;
  let metered = false;
  const meterBody = () => {
    if (metered) return;
    metered = true;
    if (size <= maxBufferedBytes) {
      if (chunks.length > 0) meter.json(parseJSON(utf8.decode(Buffer.concat(chunks))));
    } else {
      const edges = edgesOf(chunks[0] ?? new Uint8Array(), Buffer.concat(tail));
      if (edges) meter.json(edges);
    }
  };
  return tapStream(upstream.body.getReader(), {
    awaitingUpstream: quiet.awaiting,
    chunk(bytes) {
      ttfb ??= elapsed(reply.ctx);
      hasher.update(bytes);
      if (!keep) return;
      size += bytes.byteLength;
      if (size <= maxBufferedBytes) chunks.push(bytes);
      else {
        tail.push(bytes);
        tailSize += bytes.byteLength;
        while (tail.length > 1 && tailSize - tail[0]!.byteLength >= tailBytes) tailSize -= tail.shift()!.byteLength;
      }
    },
    beforeLast() {
      meterBody();
      return record({ kind: "done" });
    },
    end(how) {
      meterBody();
      void finish(how);
    },
  });
}

/** HMAC of the response bytes; digested once (a stream's bytes after its terminal event are not in it). */
function responseHasher(key: Uint8Array) {
  const hasher = new Bun.CryptoHasher("sha256", key);
  let digest: string | null = null;
  return {
    update(bytes: Uint8Array) {
      if (digest === null) hasher.update(bytes);
    },
    digest: () => (digest ??= hasher.digest("hex")),
  };
}

/** How much of the end of an over-cap body is kept to find its usage. */
const tailBytes = 256 * 1024;

/** What metering can learn from the edges of an over-cap JSON body: its model and usage. */
function edgesOf(head: Uint8Array, tail: Uint8Array): Record<string, unknown> | null {
  const model = firstStringMember(utf8.decode(head.subarray(0, 64 * 1024)), "model");
  const usage = lastObjectMember(utf8.decode(tail), "usage");
  return usage ? { ...(model ? { model } : {}), usage } : null;
}

/** How a stream's bytes reach its meter: `push` says whether a chunk completed any event. */
interface MeterFeed {
  push(bytes: Uint8Array): boolean;
  end(): void;
}

function sseFeed(meter: Meter): MeterFeed {
  const parser = new SSEParser();
  return {
    push(bytes) {
      let events = false;
      for (const event of parser.push(bytes)) {
        meter.event(event);
        events = true;
      }
      return events;
    },
    end() {
      for (const event of parser.end()) meter.event(event);
    },
  };
}

const isJSON = (contentType: string | null) => contentType !== null && /[/+]json\b/i.test(contentType);
/** Media types are case-insensitive (RFC 9110 §8.3.1): `Text/Event-Stream` is an event stream too. */
const isEventStream = (contentType: string | null) => contentType !== null && /^\s*text\/event-stream\b/i.test(contentType);

function eventObserver(
  feed: MeterFeed,
  meter: Meter,
  hasher: ReturnType<typeof responseHasher>,
  idle: IdleTimer,
  firstByte: () => void,
  record: (how: StreamEnd) => Promise<unknown>,
  finish: (how: StreamEnd) => void,
) {
  let terminal = false;
  return {
    awaitingUpstream: idle.awaiting,
    chunk(bytes: Uint8Array) {
      firstByte();
      hasher.update(bytes);
      const events = feed.push(bytes);
      // The terminal event (`[DONE]`, `message_stop`, `response.completed`, Bedrock's `metadata`)
      // ends the answer for the client: the chunk that carries it waits for the final record.
      if (events && !terminal && meter.result().terminal) {
        terminal = true;
        return record({ kind: "done" });
      }
    },
    end(how: StreamEnd) {
      feed.end();
      finish(how);
    },
  };
}

interface IdleTimer {
  /** The stream waits for the upstream's next chunk (true; the clock starts) or has it (false). */
  awaiting(waiting: boolean): void;
  stop(): void;
}

/**
 * Aborts the upstream call when its body goes quiet for longer than `streamIdleTimeoutMs`: the time
 * counted is the stream's wait for the next chunk (`awaiting`), so a client that reads slowly, for
 * which the stream stops reading the upstream, does not make the upstream look silent.
 */
function idleTimer({ abort, rt }: ReplyContext): IdleTimer {
  const ms = rt.limits.streamIdleTimeoutMs;
  let waiting = true;
  let timer: Timer | undefined;
  const fire = () => {
    if (waiting) abort.abort(new ProxyError("upstream_timeout", `The upstream sent nothing for ${ms} ms.`));
    else timer!.refresh();
  };
  if (ms > 0) timer = setTimeout(fire, ms);
  return {
    awaiting(now) {
      if (now && !waiting) timer?.refresh();
      waiting = now;
    },
    stop: () => clearTimeout(timer),
  };
}

/** A meter whose failures are logged once and never reach the stream. */
export function guardedMeter({
  provider,
  ctx,
  rt,
  upstream,
}: Pick<ReplyContext, "provider" | "ctx" | "rt"> & { upstream: MeteredResponse }): Meter {
  let failed = false;
  const fail = (hook: string, error: unknown) => {
    if (!failed) rt.log.error(`[plugin ${provider.plugin}] ${hook}: ${errorMessage(error)} (call ${ctx.id})`);
    failed = true;
  };
  let inner: Meter | null = null;
  try {
    inner = provider.adapter.meter(ctx.endpoint, { status: upstream.status, headers: upstream.headers });
  } catch (error) {
    fail("provider.meter", error);
  }
  const chunk = inner?.chunk
    ? (bytes: Uint8Array) => {
        if (inner && !failed) {
          try {
            inner.chunk!(bytes);
          } catch (error) {
            fail("meter.chunk", error);
          }
        }
      }
    : undefined;
  return {
    chunk,
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
