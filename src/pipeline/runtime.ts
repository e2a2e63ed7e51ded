/**
 * The process-wide state of a running proxy, built once from the config by `createRuntime` and
 * closed by `closeRuntime`. Everything the pipeline needs is reached through it: no hidden globals.
 */
import type { AuditReader, AuditStore, AuditTrail, ProxyKeyStore } from "../store/contract.ts";
import type { Logger, Plugin, ProviderAdapter } from "../plugin.ts";
import type { Metrics } from "./metrics.ts";
import type { SinkFeed } from "./sinks.ts";

export interface RuntimeLimits {
  /** Largest request body accepted (bytes). */
  maxBodyBytes: number;
  /** Time allowed for the upstream to answer with headers (ms). */
  upstreamTimeoutMs: number;
  /** Longest silence allowed between two chunks of an upstream body (ms; 0 = none). */
  streamIdleTimeoutMs: number;
}

export interface Runtime {
  readonly plugins: readonly Plugin[];
  readonly providers: readonly { plugin: string; adapter: ProviderAdapter }[];
  /** The primary store: durable `begin` before forwarding, `commit` of final records (secondary sinks are fed from it). */
  readonly store: AuditStore;
  /** The secondary sinks (`Plugin.audit`), fed what the store commits. */
  readonly sinks: SinkFeed;
  /** The store's reader, trail and keys (the audit API). */
  readonly reader: AuditReader;
  readonly trail: AuditTrail;
  readonly keys: ProxyKeyStore;
  /** Key of the HMAC that turns prompts and responses into keyed hashes. */
  readonly hashKey: Uint8Array;
  readonly limits: RuntimeLimits;
  /** Inbound header names never sent upstream (hop-by-hop, and those plugins read for the proxy). */
  readonly neverUpstream: readonly string[];
  /** Refuse calls (503) when the primary audit sink cannot write; false forwards them anyway. */
  readonly failClosed: boolean;
  readonly log: Logger;
  /** Calls whose response has not finished; shutdown waits for them. */
  readonly inflight: Set<Promise<void>>;
  readonly metrics: Metrics;
}

/** Shutdown waits for `work` (the record of a call must be written before the process exits). */
export function trackUntilDone(rt: Runtime, work: Promise<void>): void {
  rt.inflight.add(work);
  void work.finally(() => rt.inflight.delete(work));
}
