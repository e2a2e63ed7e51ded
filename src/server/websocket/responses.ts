/**
 * The responses one Responses API WebSocket carries, each metered as its own call: a client's
 * `response.create` event starts one — stage 4 (its limits) and stage 8's intent run before its
 * frame goes upstream — and the server events that follow are its stream, read by the provider's
 * meter until its terminal event (`response.completed`, `response.failed`, `response.incomplete`
 * or `error`). That event reaches the client once the final record is durable, as a stream's
 * terminal event does over HTTP. The upstream answers a socket's responses one at a time, in
 * order, so events belong to the oldest response still open.
 */
import { ProxyError, errorMessage } from "../../errors.ts";
import type { CallContext, Endpoint, Meter, MeteredResponse } from "../../pipeline/context.ts";
import { callEnding, type CallEnd, type CallEnding } from "../../pipeline/end.ts";
import { beginRecord, prepareBody } from "../../pipeline/forward.ts";
import { checkLimits } from "../../pipeline/limit.ts";
import { checkConsent } from "../../pipeline/consent.ts";
import { elapsed, newRecord } from "../../pipeline/record.ts";
import { guardedMeter } from "../../pipeline/respond.ts";
import { route } from "../../pipeline/route.ts";
import { trackUntilDone, type RoutedProvider, type Runtime } from "../../pipeline/runtime.ts";
import type { StreamEnd } from "../../proxy/tap.ts";
import { PluginError } from "../../plugin.ts";

/** A response as recorded: the call it stands for, `POST /v1/responses` streamed. */
const responseCall: Endpoint = { kind: "responses", wire: "openai", path: "/v1/responses", method: "POST", billed: true };
/** A socket's responses have no HTTP response of their own: the upgrade answered 101, each is a 200 until an error says otherwise. */
const socketResponse: MeteredResponse = { status: 200, headers: new Headers() };

const utf8 = new TextDecoder();
const utf8Encoder = new TextEncoder();

/** What a socket's responses share: the connection's context, the provider it is open to. */
export interface SocketCalls {
  rt: Runtime;
  provider: RoutedProvider;
  /** The upgrade's context; its request's signal aborts when the client is gone. */
  connection: CallContext;
  /** Aborted, with a ProxyError as its reason, when the upstream connection failed. */
  upstreamFailed: AbortSignal;
  sendUpstream(frame: string): void;
  /** Sends the client an event the proxy itself produced (a refusal), in order with the upstream's. */
  sendClient(frame: string): void;
}

interface OpenResponse {
  ctx: CallContext;
  meter: Meter;
  hasher: Bun.CryptoHasher;
  ending: CallEnding;
  ttfb: number | null;
  /** The upstream's `status` on an `error` event, which a call over HTTP would have answered with. */
  status: number;
  /** Refusals of responses the client asked for while this one was open: sent after its terminal event. */
  after: string[];
  done: () => void;
}

export class SocketResponses {
  readonly #open: OpenResponse[] = [];
  constructor(private readonly socket: SocketCalls) {}

  /** Responses started and not yet ended. */
  get inFlight(): number {
    return this.#open.length;
  }

  /**
   * A client text frame. Any frame that is not a `response.create` is forwarded as it is. One
   * that is starts a call: refused (an `error` event to the client and a `rejected` record) or
   * forwarded once its intent is durable; the promise settles when either is done.
   */
  clientFrame(frame: string): void | Promise<void> {
    // Every frame is parsed: a text test would miss an escaped type ("response\u002ecreate"),
    // which the upstream's JSON parser reads as response.create all the same.
    const body = parseObject(frame);
    if (!body || body.type !== "response.create") {
      this.socket.sendUpstream(frame);
      return;
    }
    return this.#start(frame, body);
  }

  /**
   * A server text frame, metered against the oldest open response. Returns a promise when the
   * frame ends that response: the frame must wait for its final record.
   */
  serverFrame(frame: string): Promise<unknown> | undefined {
    const at = this.#answering(frame);
    const current = this.#open[at];
    if (!current) return undefined;
    current.ttfb ??= elapsed(current.ctx);
    current.hasher.update(frame);
    current.meter.event({ event: null, data: frame });
    const result = current.meter.result();
    if (!result.terminal) return undefined;
    if (result.errorType) current.status = errorStatus(frame) ?? current.status;
    this.#open.splice(at, 1);
    // Queued behind this frame, which is being delivered.
    for (const refusal of current.after) this.socket.sendClient(refusal);
    return this.#finish(current, { kind: "done" });
  }

  /**
   * Which open response a server event answers: the oldest. But a bare `error` while the oldest is
   * already streaming answers a later one the upstream refused at once (e.g. one sent while
   * another was in flight): a response under way ends with its own `response.*` event.
   */
  #answering(frame: string): number {
    if (this.#open.length < 2 || this.#open[0]!.ttfb === null || !frame.includes('"error"')) return 0;
    if (parseObject(frame)?.type !== "error") return 0;
    const waiting = this.#open.findIndex((response) => response.ttfb === null);
    return waiting === -1 ? 0 : waiting;
  }

  /** The connection is over: every response still open ends as `how` says. */
  end(how: StreamEnd): void {
    for (const response of this.#open.splice(0)) void this.#finish(response, how);
  }

  /**
   * The client sent a frame over `server.maxBodyBytes`: Bun refused it unread and closed the
   * socket with 1009. Nothing of it went upstream; the trail gets a `rejected` record of it, as an
   * oversized HTTP body gets one (its content is unknown, so it names no model).
   */
  oversizedFrame(): void {
    const { rt, provider } = this.socket;
    const ctx = this.#callOf(new Uint8Array(0), null, null);
    const failure = new ProxyError(
      "body_too_large",
      `A WebSocket frame was larger than server.maxBodyBytes (${rt.limits.maxBodyBytes} bytes): the socket was closed with 1009 and nothing of the frame was forwarded. Send smaller frames, or raise server.maxBodyBytes.`,
    );
    this.#recordRefusal(ctx, failure, newRecord(ctx, provider.plugin, rt));
  }

  /** A response's own context: the connection's, with this frame as the body of a POST /v1/responses. */
  #callOf(rawBody: Uint8Array, body: Record<string, unknown> | null, model: string | null): CallContext {
    return {
      ...this.socket.connection,
      id: Bun.randomUUIDv7(),
      startedAt: Date.now(),
      startedPerf: performance.now(),
      endpoint: responseCall,
      rawBody,
      body,
      model,
      // Over a WebSocket a response is always streamed.
      stream: true,
      limitFlag: undefined,
      outputCap: undefined,
    };
  }

  async #start(frame: string, body: Record<string, unknown>): Promise<void> {
    const { rt, provider, connection } = this.socket;
    const rawBody = utf8Encoder.encode(frame);
    const model = typeof body.model === "string" ? body.model : null;
    const ctx = this.#callOf(rawBody, body, model);
    try {
      if (model === null) throw new ProxyError("missing_model", "A `response.create` event must have a string field `model`.");
      const routed = route(responseCall, model, rt);
      if (routed.plugin !== provider.plugin) {
        throw new ProxyError(
          "no_provider",
          `Model '${model}' is served by provider '${routed.plugin}', but this WebSocket is open to provider '${provider.plugin}'. Call it over HTTP, or on a WebSocket of its own provider.`,
        );
      }
      await checkConsent(ctx, rt); //                                                consent, per response (a withdrawal applies on an open socket too)
      await checkLimits(ctx, provider, rt); //                                       4 limit
    } catch (error) {
      this.#refuse(ctx, error);
      return;
    }
    const record = newRecord(ctx, provider.plugin, rt);
    try {
      await beginRecord(record, rt); //                                              8 record (intent)
    } catch (error) {
      this.#refuse(ctx, error, record);
      return;
    }
    if (this.socket.upstreamFailed.aborted || connection.request.signal.aborted) {
      // The connection ended while the intent was being written: the response never left.
      const reason = this.socket.upstreamFailed.reason;
      const failure = reason instanceof ProxyError ? reason : new ProxyError("internal_error", "client disconnected");
      const ending = callEnding(ctx, record, provider, rt);
      trackUntilDone(rt, ending.finish({ kind: "failed", error: failure, clientGone: connection.request.signal.aborted }));
      return;
    }
    let upstreamFrame = frame;
    try {
      const prepared = prepareBody(ctx, provider, rt).body;
      if (prepared instanceof Uint8Array && prepared !== rawBody) upstreamFrame = utf8.decode(prepared);
    } catch (error) {
      rt.log.error(`call ${ctx.id}: ${errorMessage(error)}; its frame goes upstream unchanged`);
    }
    const track = Promise.withResolvers<void>();
    trackUntilDone(rt, track.promise);
    rt.metrics.started();
    this.#open.push({
      ctx,
      meter: guardedMeter({ provider, ctx, rt, upstream: socketResponse }),
      hasher: new Bun.CryptoHasher("sha256", rt.hashKey),
      ending: callEnding(ctx, record, provider, rt),
      ttfb: null,
      status: 200,
      after: [],
      done: track.resolve,
    });
    this.socket.sendUpstream(upstreamFrame); //                                      5 forward
  }

  /** Stages 7-9 for a response the upstream answered (fully or not); resolves when its record is written. */
  #finish(response: OpenResponse, how: StreamEnd): Promise<unknown> {
    const end: CallEnd = {
      kind: "answered",
      status: response.status,
      how,
      meter: response.meter.result(),
      ttfb: response.ttfb,
      responseHash: response.hasher.digest("hex"),
      signal: this.socket.upstreamFailed,
    };
    const written = response.ending.record(end);
    void response.ending.finish(end).finally(response.done);
    return written;
  }

  /** The `rejected` record of a response the proxy did not forward. */
  #recordRefusal(ctx: CallContext, failure: ProxyError, inFlight: ReturnType<typeof newRecord>): void {
    const { rt, provider } = this.socket;
    trackUntilDone(rt, callEnding(ctx, inFlight, provider, rt).finish({ kind: "refused", error: failure }));
  }

  /** A response the proxy will not forward: the client gets an `error` event, the trail a `rejected` record. */
  #refuse(ctx: CallContext, error: unknown, inFlight = newRecord(ctx, this.socket.provider.plugin, this.socket.rt)): void {
    const { rt } = this.socket;
    const failure =
      error instanceof ProxyError
        ? error
        : error instanceof PluginError
          ? new ProxyError("plugin_error", error.message)
          : new ProxyError("internal_error", `Internal error: ${errorMessage(error)}`);
    if (!(error instanceof ProxyError)) rt.log.error(failure.message);
    this.#recordRefusal(ctx, failure, inFlight);
    // The client reads events in order as the answers to its requests in order: a refusal comes
    // after the responses it asked for before.
    const event = errorEvent(failure, ctx.id);
    const last = this.#open.at(-1);
    if (last) last.after.push(event);
    else this.socket.sendClient(event);
  }
}

/**
 * The Responses API's WebSocket `error` event for a refusal: the status an HTTP call would have
 * had, the error as the HTTP body would carry it, and the headers it would have had.
 */
export function errorEvent(error: ProxyError, recordId: string): string {
  return JSON.stringify({
    type: "error",
    status: error.status,
    error: { type: error.type, code: error.code, message: error.message, param: null },
    headers: { ...error.headers, "x-audit-record-id": recordId },
  });
}

function parseObject(text: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The HTTP status an `error` event carries (`{"type":"error","status":429,...}`), if any. */
function errorStatus(frame: string): number | null {
  const event = parseObject(frame);
  const status = event?.type === "error" ? event.status : null;
  return typeof status === "number" && Number.isInteger(status) && status >= 400 && status <= 599 ? status : null;
}
