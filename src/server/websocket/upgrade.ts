/**
 * Opening a Responses API WebSocket (`GET /v1/responses` with `Upgrade: websocket`). The
 * connection goes through the stages an HTTP call does before it is forwarded — route (to a
 * provider whose adapter can `upgrade`), authenticate, attribute, identity — and a refusal is an
 * HTTP answer before any upgrade, with a `rejected` record. The socket is then opened upstream,
 * with the credential an HTTP call would carry; only once the upstream has accepted it is the
 * client's upgraded, so an upstream that refuses (401, 404, 429…) is answered with its own status
 * (and recorded as `upstream_error`), and clients that fall back to HTTP on a refused upgrade
 * (Codex) do so at once. Limits apply per response, not here (./responses.ts).
 */
import type { Server } from "bun";
import { ProxyError, errorMessage, toWireError } from "../../errors.ts";
import type { CallContext, Endpoint } from "../../pipeline/context.ts";
import { callEnding } from "../../pipeline/end.ts";
import { upstreamHeaders } from "../../pipeline/forward.ts";
import { callHookSync } from "../../pipeline/hooks.ts";
import { rejectCall } from "../../pipeline/index.ts";
import { attribute, authenticate, holdToPrincipal } from "../../pipeline/attribute.ts";
import { claimUpstreamSlot } from "../../pipeline/limit.ts";
import { elapsed, keyedHash, newRecord } from "../../pipeline/record.ts";
import { baseContext } from "../../pipeline/request.ts";
import { route } from "../../pipeline/route.ts";
import { trackUntilDone, type RoutedProvider, type Runtime } from "../../pipeline/runtime.ts";
import type { UpstreamSocket } from "../../plugin.ts";
import { SocketBridge } from "./bridge.ts";

/** The handshake's own headers: Bun's WebSocket client makes its own for the upstream. */
const handshakeHeaders = ["sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"];

export function isWebSocketUpgrade(request: Request): boolean {
  return request.method === "GET" && request.headers.get("upgrade")?.toLowerCase() === "websocket";
}

/**
 * Answers the upgrade: undefined once the client's socket is upgraded (Bun then owns the
 * response), else the refusal. `onEnd` runs once, when the connection (or its refusal) is over.
 */
export async function upgradeSocket(
  request: Request,
  server: Server<SocketBridge>,
  endpoint: Endpoint,
  rt: Runtime,
  onEnd: () => void,
): Promise<Response | undefined> {
  // The connection's own request: the upgrade's headers, and a signal that aborts when the client is gone.
  const clientGone = new AbortController();
  const socketRequest = new Request(request.url, { headers: request.headers, signal: clientGone.signal });
  const ctx: CallContext = baseContext(socketRequest, { ...endpoint, method: "GET" });
  let provider: RoutedProvider | null = null;
  let release = () => {};
  try {
    provider = route(ctx.endpoint, null, rt); //                                     1 route
    ctx.principal = await authenticate(ctx, rt); //                                  2 authenticate
    ctx.attribution = await attribute(ctx, rt); //                                   3 attribute
    if (ctx.principal) holdToPrincipal(ctx, ctx.principal); //                         (identity.ts)
    const target = upstreamTarget(ctx, provider, rt);
    release = claimUpstreamSlot(rt);
    const opened = await openUpstream(target, request, rt);
    if ("refused" in opened) {
      release();
      onEnd();
      return refusedByUpstream(ctx, provider, rt, opened.refused);
    }
    const upstream = opened.socket;
    let ended = false;
    const bridge = new SocketBridge({
      rt,
      provider,
      connection: ctx,
      clientGone,
      upstream,
      onEnd: () => {
        if (ended) return;
        ended = true;
        release();
        onEnd();
      },
    });
    // Bun's WebSocket client does not show the upstream's handshake headers: only its subprotocol is passed on.
    const headers: Record<string, string> = {};
    if (upstream.protocol) headers["sec-websocket-protocol"] = upstream.protocol;
    if (server.upgrade(request, { data: bridge, headers })) return undefined;
    upstream.close(1000);
    throw new ProxyError(
      "invalid_body",
      "The request asked for a WebSocket upgrade the proxy cannot perform (a malformed WebSocket handshake).",
    );
  } catch (error) {
    release();
    onEnd();
    return rejectCall(error, ctx, provider, rt);
  }
}

function upstreamTarget(ctx: CallContext, provider: RoutedProvider, rt: Runtime): UpstreamSocket {
  const adapter = provider.adapter;
  const target = adapter.upgrade
    ? callHookSync(provider.plugin, "provider.upgrade", () =>
        adapter.upgrade!(ctx.endpoint, { ctx, headers: upstreamHeaders(ctx, provider, rt, handshakeHeaders) }),
      )
    : null;
  if (target) return target;
  throw new ProxyError(
    "no_provider",
    `Provider '${provider.plugin}' does not serve ${ctx.endpoint.path} over a WebSocket; call it over HTTP (POST ${ctx.endpoint.path}).`,
  );
}

type Opened = { socket: WebSocket } | { refused: { status: number | null; message: string } };

/** Opens the upstream socket; resolves once it is open, or with why not (its HTTP status if it answered one). */
function openUpstream(target: UpstreamSocket, request: Request, rt: Runtime): Promise<Opened> {
  const protocols = request.headers
    .get("sec-websocket-protocol")
    ?.split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  const { promise, resolve } = Promise.withResolvers<Opened>();
  let socket: WebSocket;
  try {
    // Bun's WebSocket takes handshake headers (a Bun extension of the WHATWG constructor).
    socket = new WebSocket(target.url, { headers: Object.fromEntries(target.headers), protocols } as unknown as string[]);
  } catch (error) {
    return Promise.resolve({ refused: { status: null, message: errorMessage(error) } });
  }
  const deadline = setTimeout(() => {
    socket.terminate();
    resolve({ refused: { status: 504, message: `The upstream did not accept the WebSocket within ${rt.limits.upstreamTimeoutMs} ms.` } });
  }, rt.limits.upstreamTimeoutMs);
  const onOpen = () => {
    clearTimeout(deadline);
    socket.removeEventListener("error", onError);
    resolve({ socket });
  };
  const onError = (event: Event) => {
    clearTimeout(deadline);
    const message = (event as ErrorEvent).message ?? "the connection failed";
    // Bun reports a handshake the upstream answered with another status as "Expected 101 status code: 401".
    const status = /Expected 101 status code: (\d{3})/.exec(message)?.[1];
    resolve({ refused: { status: status ? Number(status) : null, message } });
  };
  socket.addEventListener("open", onOpen, { once: true });
  socket.addEventListener("error", onError, { once: true });
  return promise;
}

const typeOfStatus: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  429: "rate_limit_error",
};

/**
 * The upstream did not accept the socket: the client gets the upstream's status (502 if it gave
 * none), and the trail an `upstream_error` record of the attempt, as for a refused HTTP call.
 */
function refusedByUpstream(
  ctx: CallContext,
  provider: RoutedProvider,
  rt: Runtime,
  refused: { status: number | null; message: string },
): Response {
  const ending = callEnding(ctx, newRecord(ctx, provider.plugin, rt), provider, rt);
  if (refused.status === null || refused.status === 504) {
    const failure =
      refused.status === 504
        ? new ProxyError("upstream_timeout", refused.message)
        : new ProxyError(
            "upstream_unreachable",
            `Could not open a WebSocket to the upstream of provider '${provider.plugin}': ${refused.message}. Check its base URL and that it serves WebSockets.`,
          );
    trackUntilDone(rt, ending.finish({ kind: "failed", error: failure, clientGone: false }));
    return toWireError(failure, "openai", { "x-audit-record-id": ctx.id });
  }
  const status = refused.status;
  trackUntilDone(
    rt,
    ending.finish({
      kind: "answered",
      status,
      how: { kind: "done" },
      meter: { usage: null, responseModel: null, terminal: true, errorType: null },
      ttfb: elapsed(ctx),
      responseHash: keyedHash(rt.hashKey, new Uint8Array()),
      signal: new AbortController().signal,
    }),
  );
  const message = `The upstream of provider '${provider.plugin}' refused the WebSocket with HTTP ${status}.`;
  return Response.json(
    { error: { message, type: typeOfStatus[status] ?? "api_error", code: `upstream_${status}`, param: null } },
    { status, headers: { "x-audit-record-id": ctx.id } },
  );
}
