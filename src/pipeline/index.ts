/**
 * The request pipeline: every proxied call runs the stages of ./stages.ts, in that order, one
 * file each where a stage has substance — read the request (./request.ts), route (./route.ts),
 * authenticate and attribute (./attribute.ts), hold the claimed identity to a principal
 * (./identity.ts: 403, or the claim kept in `delegation`), limit (./limit.ts), forward
 * (./forward.ts: the intent made durable first, so a call that reaches an upstream always leaves a
 * record even if the process is killed), meter as the answer passes (./respond.ts), and the one
 * ending (./end.ts): price, record, settle — exactly once per call, however it ended. Plugin
 * hooks run through one runner (./hooks.ts). The runner knows nothing about Elysia: it takes a
 * Request and returns a Response.
 */
import { ProxyError, endpointError, errorMessage } from "../errors.ts";
import { PluginError } from "../plugin.ts";
import { emptyAttribution, type CallContext, type Endpoint } from "./context.ts";
import { callEnding } from "./end.ts";
import { newRecord } from "./record.ts";
import { trackUntilDone, type RoutedProvider, type Runtime } from "./runtime.ts";
import { baseContext, readCall } from "./request.ts";
import { route } from "./route.ts";
import { attribute, authenticate, holdToPrincipal } from "./attribute.ts";
import { checkConsent } from "./consent.ts";
import { checkLimits, claimUpstreamSlot } from "./limit.ts";
import { forward } from "./forward.ts";
import { isPromiseLike } from "./hooks.ts";

/**
 * Runs one proxied call. `onEnd` is called once when the call is over: when a refused call is
 * answered, or when a forwarded call's response has ended (done, failed or cancelled).
 */
export async function runCall(
  request: Request,
  endpoint: Endpoint,
  rt: Runtime,
  onEnd: () => void = () => {},
  /** The provider that resolved the endpoint from one of its own paths: it serves the call (stage 1 decided). */
  resolvedBy: RoutedProvider | null = null,
): Promise<Response> {
  const base = baseContext(request, endpoint);
  let ctx: CallContext = base;
  let routed: RoutedProvider | null = null;
  let ended = false;
  const end = () => {
    if (!ended) onEnd();
    ended = true;
  };
  try {
    // Stages whose hooks all answer synchronously are not awaited (a microtask each, per call).
    ctx = await readCall(base, rt); //                                               the request
    const provider = (routed = resolvedBy ?? route(ctx.endpoint, ctx.model, rt)); // 1 route
    const principal = authenticate(ctx, rt); //                                      2 authenticate
    ctx.principal = isPromiseLike(principal) ? await principal : principal;
    const attribution = attribute(ctx, rt); //                                       3 attribute
    ctx.attribution = isPromiseLike(attribution) ? await attribution : attribution;
    if (ctx.principal) holdToPrincipal(ctx, ctx.principal); //                         (identity.ts)
    const consent = checkConsent(ctx, rt); //                                          (consent.ts)
    if (consent) await consent;
    const release = claimUpstreamSlot(rt);
    try {
      const limited = checkLimits(ctx, provider, rt); //                             4 limit
      if (limited) await limited;
      return await forward(ctx, provider, rt, () => (release(), end())); //          5-9
    } catch (error) {
      release();
      throw error;
    }
  } catch (error) {
    end();
    return rejectCall(error, ctx, routed, rt);
  }
}

/** Refuses a call before reading its body (e.g. its client has too many open), and records it. */
export function refuseCall(request: Request, endpoint: Endpoint, rt: Runtime, error: ProxyError): Promise<Response> {
  return rejectCall(error, baseContext(request, endpoint), null, rt);
}

/** Answers a call refused at any stage before it was forwarded, and records it as `rejected`. */
export async function rejectCall(error: unknown, ctx: CallContext, provider: RoutedProvider | null, rt: Runtime): Promise<Response> {
  // A client that hangs up while its body is read makes the read fail: that is no internal error.
  const clientGone = !(error instanceof ProxyError) && ctx.request.signal.aborted;
  const failure =
    error instanceof ProxyError
      ? error
      : error instanceof PluginError
        ? new ProxyError("plugin_error", error.message)
        : new ProxyError("internal_error", clientGone ? "client disconnected" : `Internal error: ${errorMessage(error)}`);
  if (!(error instanceof ProxyError) && !clientGone) rt.log.error(failure.message);
  // A call refused before stage 3 is still attributed, so refusals show up under their agent.
  if (ctx.attribution === emptyAttribution) {
    try {
      ctx.attribution = await attribute(ctx, rt);
    } catch {
      ctx.attribution = emptyAttribution;
    }
  }
  trackUntilDone(
    rt,
    callEnding(ctx, newRecord(ctx, provider?.plugin ?? null, rt), provider, rt).finish({ kind: "refused", error: failure, clientGone }),
  );
  return endpointError(failure, ctx.endpoint, { "x-audit-record-id": ctx.id });
}
