/**
 * The pipeline's stages as data: the one table that ./index.ts runs, src/plugin.ts documents and
 * the docs print (a test holds the docs' table to this one). `kind` is the hook kind of ./hooks.ts.
 */
import type { HookKind } from "./hooks.ts";

export interface Stage {
  readonly stage: string;
  readonly hook: string;
  readonly kind: HookKind | "routed";
  readonly onError: "refuse" | "log";
  /** What the stage produces. */
  readonly output: string;
}

export const stages = [
  { stage: "route", hook: "provider.match", kind: "first", onError: "refuse", output: "the provider adapter that serves the call" },
  { stage: "authenticate", hook: "authenticate", kind: "first", onError: "refuse", output: "the principal (key, token), or none" },
  {
    stage: "attribute",
    hook: "attribute",
    kind: "merge",
    onError: "refuse",
    output: "agent, user, task, session, trace, extra dimensions",
  },
  { stage: "limit", hook: "limit.check", kind: "sequential", onError: "refuse", output: "allowed, or refused with 429 / 402" },
  { stage: "forward", hook: "provider.forward", kind: "routed", onError: "refuse", output: "the upstream response, unread" },
  { stage: "meter", hook: "provider.meter", kind: "routed", onError: "log", output: "usage and response model, read as bytes pass" },
  { stage: "price", hook: "price", kind: "first", onError: "log", output: "the exact cost in nano-USD, and its source" },
  { stage: "record", hook: "audit.write", kind: "broadcast", onError: "log", output: "the final record, committed, then to every sink" },
  { stage: "settle", hook: "limit.settle", kind: "sequential", onError: "log", output: "limits reconciled with the real usage, once" },
  { stage: "observe", hook: "observe", kind: "broadcast", onError: "log", output: "the ended call told to telemetry (spans, metrics)" },
] as const satisfies readonly Stage[];
