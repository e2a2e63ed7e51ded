/**
 * One proxied WebSocket: the client's socket (Bun.serve's) and the upstream's (Bun's WebSocket
 * client), frames passed each way unchanged — text as text, binary as binary, pings and pongs,
 * the close code and reason — with each response metered on the way (./responses.ts).
 *
 * Memory is bounded each way. A frame waiting its turn (behind a `response.create` whose intent
 * is being written, or a terminal event whose record is) queues in a lane of at most
 * `maxQueuedBytes`; past that, and whenever a socket's own send buffer holds more than that, the
 * side sending into it is paused (it stops reading, so TCP pushes back on its sender) until the
 * buffer is down to half. So a slow client slows the upstream, never the proxy's memory: what a
 * socket buffers is at most `maxQueuedBytes`, plus the frames its sender had already read when it
 * was paused (one read, and the frame that read completes — a response's last events carry its
 * whole output, so one frame can be many megabytes). The bridge never drops a frame to bound
 * memory; a stream with a hole in it is no use to a client.
 */
import type { ServerWebSocket } from "bun";
import { ProxyError } from "../../errors.ts";
import type { CallContext } from "../../pipeline/context.ts";
import type { RoutedProvider, Runtime } from "../../pipeline/runtime.ts";
import { FrameLane } from "./lane.ts";
import { SocketResponses } from "./responses.ts";

/** Bytes each direction may hold in the proxy before its sender is paused. */
export const maxQueuedBytes = 1024 * 1024;
/** How often a paused client is checked for room in the upstream's send buffer (it has no drain event). */
const drainPollMs = 10;

type Frame = string | Buffer | ArrayBuffer | Uint8Array;

export interface BridgeOptions {
  rt: Runtime;
  provider: RoutedProvider;
  connection: CallContext;
  /** Aborts the connection's request signal: the client is gone. */
  clientGone: AbortController;
  upstream: WebSocket;
  /** Called once when both sides are closed. */
  onEnd: () => void;
}

/** Close codes an endpoint may send (RFC 6455 §7.4): not 1005, 1006, 1015. */
const sendable = (code: number) =>
  (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);

export class SocketBridge {
  readonly #opts: BridgeOptions;
  #client: ServerWebSocket<SocketBridge> | null = null;
  readonly #responses: SocketResponses;
  readonly #toUpstream: FrameLane;
  readonly #toClient: FrameLane;
  readonly #upstreamFailed = new AbortController();
  readonly #clientOpened = Promise.withResolvers<void>();
  readonly #pausedUpstream = new Set<string>();
  readonly #pausedClient = new Set<string>();
  #drainPoll: Timer | undefined;
  #idle: Timer | undefined;
  #ended = false;

  constructor(opts: BridgeOptions) {
    this.#opts = opts;
    const { rt, provider, connection, upstream } = opts;
    this.#responses = new SocketResponses({
      rt,
      provider,
      connection,
      upstreamFailed: this.#upstreamFailed.signal,
      sendUpstream: (frame) => this.#sendUpstream(frame),
      sendClient: (frame) => this.#toClient.push(frame.length, () => this.#sendClient(frame)),
    });
    this.#toUpstream = new FrameLane(
      maxQueuedBytes,
      () => this.#pauseClient("queue"),
      () => this.#resumeClient("queue"),
    );
    this.#toClient = new FrameLane(
      maxQueuedBytes,
      () => this.#pauseUpstream("queue"),
      () => this.#resumeUpstream("queue"),
    );
    // Nothing reaches the client before its socket is open.
    this.#toClient.push(0, () => this.#clientOpened.promise);
    upstream.binaryType = "nodebuffer";
    upstream.addEventListener("message", (event) => this.#fromUpstream(event.data as Frame));
    upstream.addEventListener("ping", (event) => this.#client?.ping((event as MessageEvent).data as Buffer));
    upstream.addEventListener("pong", (event) => this.#client?.pong((event as MessageEvent).data as Buffer));
    upstream.addEventListener("close", (event) => this.#upstreamClosed(event.code, event.reason));
  }

  // The client's side, called by Bun.serve's websocket handlers (./index.ts).

  clientOpen(ws: ServerWebSocket<SocketBridge>): void {
    this.#client = ws;
    this.#clientOpened.resolve();
  }

  clientMessage(message: string | Buffer): void {
    const size = typeof message === "string" ? message.length : message.byteLength;
    // A binary frame whose bytes are a response.create (JSON text) could be read as one upstream:
    // it is metered as a response like the text frame, and goes up as text; any other binary frame
    // passes unchanged.
    const event = typeof message === "string" ? message : responseCreateText(message);
    this.#toUpstream.push(size, () => (event !== null ? this.#responses.clientFrame(event) : this.#sendUpstream(message)));
    // The upstream's silence is counted from the first request it was given; the client's own
    // frames after that do not make it any less silent.
    if (this.#responses.inFlight === 0) this.#armIdle();
  }

  clientPing(data: Buffer): void {
    if (this.#opts.upstream.readyState === WebSocket.OPEN) this.#opts.upstream.ping(data);
  }

  clientPong(data: Buffer): void {
    if (this.#opts.upstream.readyState === WebSocket.OPEN) this.#opts.upstream.pong(data);
  }

  /**
   * Some of the client's send buffer was written. Bun calls this at each write while anything is
   * buffered, down to empty, so waiting for half leaves no way to stall.
   */
  clientDrain(): void {
    const client = this.#client;
    if (!client || client.getBufferedAmount() <= maxQueuedBytes / 2) this.#resumeUpstream("client");
  }

  clientClosed(code: number, reason: string): void {
    if (this.#ended) return;
    this.#opts.clientGone.abort(new ProxyError("internal_error", "client disconnected"));
    if (frameTooBig(code, reason)) this.#responses.oversizedFrame();
    this.#responses.end({ kind: "cancel" });
    const { upstream } = this.#opts;
    if (upstream.readyState === WebSocket.OPEN || upstream.readyState === WebSocket.CONNECTING) {
      if (sendable(code)) upstream.close(code, reason);
      else if (code === 1005) upstream.close();
      else upstream.terminate();
    }
    this.#end();
  }

  // The upstream's side.

  #fromUpstream(data: Frame): void {
    this.#armIdle();
    const size = typeof data === "string" ? data.length : data.byteLength;
    this.#toClient.push(size, () => {
      if (typeof data !== "string") return this.#sendClient(data);
      const wait = this.#responses.serverFrame(data);
      if (!wait) return this.#sendClient(data);
      return wait.then(() => this.#sendClient(data));
    });
  }

  #upstreamClosed(code: number, reason: string): void {
    if (this.#ended) return;
    // After the frames it sent before closing.
    this.#toClient.push(0, () => {
      if (this.#ended) return;
      const clean = sendable(code) || code === 1005;
      if (this.#responses.inFlight > 0) {
        if (clean) this.#responses.end({ kind: "done" });
        else {
          const failure = new ProxyError(
            "upstream_unreachable",
            `The upstream's WebSocket broke off (code ${code}) before the response ended.`,
          );
          this.#upstreamFailed.abort(failure);
          this.#responses.end({ kind: "upstream_error", error: failure });
        }
      }
      const client = this.#client;
      if (client) {
        if (sendable(code)) client.close(code, reason);
        else if (code === 1005) client.close();
        else client.close(1011, "upstream connection lost");
      }
      this.#end();
    });
  }

  // Sending, with backpressure.

  #sendUpstream(frame: Frame): void {
    const { upstream } = this.#opts;
    if (upstream.readyState !== WebSocket.OPEN) return;
    upstream.send(frame);
    if (upstream.bufferedAmount > maxQueuedBytes && !this.#drainPoll) {
      this.#pauseClient("upstream");
      this.#drainPoll = setInterval(() => {
        if (upstream.bufferedAmount > maxQueuedBytes / 2 && upstream.readyState === WebSocket.OPEN) return;
        clearInterval(this.#drainPoll);
        this.#drainPoll = undefined;
        this.#resumeClient("upstream");
      }, drainPollMs);
    }
  }

  #sendClient(frame: Frame): void {
    const client = this.#client;
    if (!client || this.#ended) return;
    // The frame is queued behind what the client has not read yet (Bun's send returns -1) or
    // written; past maxQueuedBytes buffered, the upstream is paused until half of it is read.
    // Bun drops a frame (0) only past its backpressure limit, which ./index.ts sets beyond reach;
    // should it drop one anyway, the stream has a hole: close, and its responses end as aborted.
    const sent = client.send(frame);
    if (sent === 0 && client.readyState === 1) client.close(1011, "the client did not read fast enough");
    else if (client.getBufferedAmount() > maxQueuedBytes) this.#pauseUpstream("client");
  }

  #pauseUpstream(reason: string): void {
    if (this.#pausedUpstream.size === 0) this.#opts.upstream.pause();
    this.#pausedUpstream.add(reason);
  }

  #resumeUpstream(reason: string): void {
    if (this.#pausedUpstream.delete(reason) && this.#pausedUpstream.size === 0) this.#opts.upstream.resume();
  }

  #pauseClient(reason: string): void {
    if (this.#pausedClient.size === 0) this.#client?.pause();
    this.#pausedClient.add(reason);
  }

  #resumeClient(reason: string): void {
    if (this.#pausedClient.delete(reason) && this.#pausedClient.size === 0) this.#client?.resume();
  }

  /**
   * While a response is open, an upstream silent for longer than `streamIdleTimeoutMs` is given up
   * on, as a quiet HTTP stream is: the response records `upstream_timeout`, both sides close. An
   * upstream the bridge itself stopped reading (a client that does not read) is not silent: the
   * clock starts again.
   */
  #armIdle(): void {
    const ms = this.#opts.rt.limits.streamIdleTimeoutMs;
    if (ms <= 0) return;
    if (this.#idle) this.#idle.refresh();
    else {
      this.#idle = setTimeout(() => {
        if (this.#responses.inFlight === 0 || this.#ended) {
          this.#idle = undefined;
          return;
        }
        if (this.#pausedUpstream.size > 0) {
          this.#idle!.refresh();
          return;
        }
        const failure = new ProxyError("upstream_timeout", `The upstream sent nothing for ${ms} ms.`);
        this.#upstreamFailed.abort(failure);
        this.#responses.end({ kind: "upstream_error", error: failure });
        this.#opts.upstream.terminate();
        this.#client?.close(1011, "upstream timed out");
        this.#end();
      }, ms);
    }
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    clearTimeout(this.#idle);
    clearInterval(this.#drainPoll);
    this.#toClient.close();
    this.#toUpstream.close();
    this.#clientOpened.resolve();
    this.#opts.onEnd();
  }
}

/**
 * Bun refused a client frame over maxPayloadLength (server.maxBodyBytes) and closed the socket:
 * the client sees 1009, but Bun 1.4's close handler is given 1006 with uWebSockets' reason
 * "Received too big message" (checked by test/server/responses-websocket-lifecycle.test.ts).
 */
function frameTooBig(code: number, reason: string): boolean {
  return code === 1009 || (code === 1006 && reason === "Received too big message");
}

/** The frame's bytes as text when they are the UTF-8 JSON of a response.create event, else null. */
function responseCreateText(bytes: Buffer): string | null {
  let start = 0;
  while (start < bytes.length && (bytes[start] === 0x20 || bytes[start] === 0x09 || bytes[start] === 0x0a || bytes[start] === 0x0d))
    start++;
  if (bytes[start] !== 0x7b) return null; // "{"
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    const value: unknown = JSON.parse(text);
    const type = typeof value === "object" && value !== null && !Array.isArray(value) ? (value as { type?: unknown }).type : undefined;
    return type === "response.create" ? text : null;
  } catch {
    return null;
  }
}
