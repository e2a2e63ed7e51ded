/**
 * The process-wide state of a running proxy, built once from the config by `createRuntime` and
 * closed by `closeRuntime`. Everything the pipeline needs is reached through it: no hidden globals.
 */
import type { AuditReader, AuditStore, AuditTrail, ConsentStore, ProxyKeyStore } from "../store/contract.ts";
import type { Logger, Plugin, ProviderAdapter } from "../plugin.ts";
import type { Metrics } from "./metrics.ts";
import type { SinkFeed } from "./sinks.ts";
import type { TagLimits } from "../tags.ts";

export interface RuntimeLimits {
  /** Largest request body accepted (bytes). */
  maxBodyBytes: number;
  /** Time allowed for the upstream to answer with headers (ms). */
  upstreamTimeoutMs: number;
  /** Longest silence allowed between two chunks of an upstream body (ms; 0 = none). */
  streamIdleTimeoutMs: number;
  /** Time a request body has to arrive in full (ms; 0 = none). */
  bodyTimeoutMs: number;
  /** Proxied requests one client address may have open at once (0 = no bound). */
  maxConnectionsPerClient: number;
  /** Largest body streamed upstream unread (file uploads, unknown paths), in bytes. */
  maxUploadBytes: number;
  /** Paths under /v1 the proxy does not know: forwarded to the routed provider, or refused with 404. */
  unknownPaths: "forward" | "refuse";
}

export type ConsentMode = "off" | "record" | "enforce";

/** Whether and how calls are held to consents (./consent.ts). */
export interface ConsentPolicy {
  /** The mode for a call whose credential gives this tier (none in open mode). */
  modeFor(tier: string | undefined): ConsentMode;
}

/** A provider adapter with the name of the plugin that provides it. */
export interface RoutedProvider {
  readonly plugin: string;
  readonly adapter: ProviderAdapter;
}

export interface Runtime {
  readonly plugins: readonly Plugin[];
  readonly providers: readonly RoutedProvider[];
  /** The primary store: durable `begin` before forwarding, `commit` of final records (secondary sinks are fed from it). */
  readonly store: AuditStore;
  /** The secondary sinks (`Plugin.audit`), fed what the store commits. */
  readonly sinks: SinkFeed;
  /** The store's reader, trail and keys (the audit API). */
  readonly reader: AuditReader;
  readonly trail: AuditTrail;
  readonly keys: ProxyKeyStore;
  /** The consents calls are checked against, and the audit API manages. */
  readonly consents: ConsentStore;
  /** Whether and how calls are held to consents (`consent` in the config; ./consent.ts). */
  readonly consent: ConsentPolicy;
  /** Stops the periodic recording of consent expiries (./consent.ts `sweepConsentExpiries`). */
  readonly stopConsentSweep: () => void;
  /** Key of the HMAC that turns prompts and responses into keyed hashes. */
  readonly hashKey: Uint8Array;
  readonly limits: RuntimeLimits;
  /** Bounds on a call's tags, and the tags declared personal (config `tags`). */
  readonly tags: TagLimits & { personalSet: ReadonlySet<string> };
  /** Inbound header names never sent upstream (hop-by-hop, and those plugins read for the proxy). */
  readonly neverUpstream: readonly string[];
  /** Refuse calls (503) when the primary store cannot hold their intent; false forwards them anyway. */
  readonly failClosed: boolean;
  readonly log: Logger;
  /** Calls whose response has not finished; shutdown waits for them. */
  readonly inflight: Set<Promise<void>>;
  /** Calls forwarded upstream and not yet ended, against `server.maxUpstreamConnections`. */
  readonly upstreamSlots: UpstreamSlots;
  readonly metrics: Metrics;
}

/** A count of calls in flight upstream, refused past `max` (not queued). */
export class UpstreamSlots {
  inUse = 0;
  constructor(readonly max: number) {}

  /** Takes a slot; the function returned gives it back (once). Null when every slot is in use. */
  claim(): (() => void) | null {
    if (this.inUse >= this.max) return null;
    this.inUse++;
    let held = true;
    return () => {
      if (held) this.inUse--;
      held = false;
    };
  }
}

/** Shutdown waits for `work` (the record of a call must be written before the process exits). */
export function trackUntilDone(rt: Runtime, work: Promise<void>): void {
  rt.inflight.add(work);
  void work.finally(() => rt.inflight.delete(work));
}
