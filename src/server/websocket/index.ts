/**
 * The Responses API over WebSocket (`GET /v1/responses` with an Upgrade): ./upgrade.ts opens a
 * connection through the pipeline's first stages, ./bridge.ts passes its frames both ways, and
 * ./responses.ts meters and records each response it carries. These are Bun.serve's `websocket`
 * handlers; each socket's data is its bridge.
 */
import type { WebSocketHandler } from "bun";
import type { Runtime } from "../../pipeline/runtime.ts";
import type { SocketBridge } from "./bridge.ts";

export { isWebSocketUpgrade, upgradeSocket } from "./upgrade.ts";
export type { SocketBridge } from "./bridge.ts";

/** uWebSockets keeps the limit in 32 bits: its largest value. */
const unreachableBackpressure = 2 ** 32 - 1;

export function socketHandlers(rt: Runtime): WebSocketHandler<SocketBridge> {
  return {
    // A frame is a request body or a response event: the same bound as an HTTP body.
    maxPayloadLength: rt.limits.maxBodyBytes,
    // Past this Bun drops a frame. The bridge bounds what is buffered itself, by pausing the
    // upstream past maxQueuedBytes (./bridge.ts); a limit it could reach would drop a frame the
    // upstream had already sent, such as a response's last events carrying its whole output.
    backpressureLimit: unreachableBackpressure,
    // A quiet connection is pinged before it times out; a client that answers stays connected.
    idleTimeout: 120,
    sendPings: true,
    open: (ws) => ws.data.clientOpen(ws),
    message: (ws, message) => ws.data.clientMessage(message),
    ping: (ws, data) => ws.data.clientPing(data),
    pong: (ws, data) => ws.data.clientPong(data),
    drain: (ws) => ws.data.clientDrain(),
    close: (ws, code, reason) => ws.data.clientClosed(code, reason),
  };
}
