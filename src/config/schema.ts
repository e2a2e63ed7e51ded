/**
 * The config file's schema: the single source of the config types. `defineConfig` only returns its
 * argument (for editor types); the loader validates with this schema and reports every wrong
 * option by its path.
 */
import { tagLimitsSchema } from "../tags.ts";
import { z } from "zod";
import type { Plugin } from "../plugin.ts";
import { adminTokenSchema } from "../server/roles.ts";
import { logSettingsSchema } from "../log.ts";

/** Bun's fetch limit is at most 65,535; the proxy keeps 64 of it for its own calls (webhooks, JWKS). */
export const fetchHeadroom = 64;
const maxUpstreamConnections = 65_535 - fetchHeadroom;

export const consentModes = ["off", "record", "enforce"] as const;
const consentMode = z.enum(consentModes);

/**
 * Whether calls are held to the consents in the store (src/pipeline/consent.ts): "off" (not
 * looked up), "record" (the record names the consent that covered the call, or says none did),
 * "enforce" (a call for a user that no active consent covers is refused with 403
 * consent_required). One mode for every call, or a default and a mode per tier (the tier a proxy
 * key or token gives the call).
 */
export const consentConfigSchema = z
  .union([
    consentMode,
    z
      .object({
        mode: consentMode.default("off"),
        /** Tier name → mode, for calls whose credential names that tier. */
        tiers: z.record(z.string(), consentMode).default({}),
      })
      .strict(),
  ])
  .default("off");

const pluginSchema = z.custom<Plugin>(
  (value) => typeof value === "object" && value !== null && typeof (value as { name?: unknown }).name === "string",
  { message: "expected a plugin object { name, ...hooks }, e.g. openai() or definePlugin({ name: 'mine', ... })" },
);

export const configSchema = z
  .object({
    server: z
      .object({
        port: z.number().int().min(0).max(65535).default(8080),
        host: z.string().min(1).default("127.0.0.1"),
        /** Largest request body accepted, in bytes (default 32 MiB). */
        maxBodyBytes: z
          .number()
          .int()
          .positive()
          .default(32 * 1024 * 1024),
        /** Time the upstream has to answer with headers, in ms (default 10 min). */
        upstreamTimeoutMs: z.number().int().positive().default(600_000),
        /** Longest silence between two chunks of a response, in ms (default 5 min; 0 = none). */
        streamIdleTimeoutMs: z.number().int().nonnegative().default(300_000),
        /** On SIGTERM/SIGINT, how long in-flight calls may take to finish, in ms. */
        shutdownGraceMs: z.number().int().nonnegative().default(30_000),
        /** The proxy's log: `format` "text" (default) or "json" lines; `level` "info" (default), "warn" or "error". */
        log: logSettingsSchema.prefault({}),
        /**
         * Calls forwarded upstream at once (each holds an upstream connection until its response
         * ends); past it a call is refused with 503 proxy_busy. Also sets Bun's fetch limit
         * (BUN_CONFIG_MAX_HTTP_REQUESTS) at start, which would otherwise queue calls past 256.
         */
        maxUpstreamConnections: z.number().int().min(1).max(maxUpstreamConnections).default(4096),
        /** Time a request body has to arrive in full, in ms (default 30 s; 0 = none); past it 408. */
        bodyTimeoutMs: z.number().int().nonnegative().default(30_000),
        /**
         * Proxied requests one client address may have open at once (default 1024; 0 = no bound);
         * past it 429. Counted by the TCP peer address: behind a load balancer every client shares
         * the balancer's, so set 0 there and bound clients at the balancer.
         */
        maxConnectionsPerClient: z.number().int().nonnegative().default(1024),
        /**
         * Largest request body the proxy streams upstream without reading it (file uploads,
         * upload parts, paths it does not know), in bytes (default 512 MiB, OpenAI's file limit); past it 413.
         */
        maxUploadBytes: z
          .number()
          .int()
          .positive()
          .default(512 * 1024 * 1024),
        /**
         * Paths under /v1 that are no endpoint the proxy knows: "forward" (default) sends them to
         * the routed provider and records them (`endpoint` is the path, `usage_source` none);
         * "refuse" answers 404 and records the refusal.
         */
        unknownPaths: z.enum(["forward", "refuse"]).default("forward"),
      })
      .strict()
      .prefault({}),
    /** Plugins in pipeline order. Omit for the defaults: openai, anthropic, header attribution, SQLite audit. */
    plugins: z.array(pluginSchema).optional(),
    audit: z
      .object({
        /** Where the SQLite audit store lives when `sqliteAudit()` is given no path. */
        logDb: z.string().min(1).optional(),
        /** Forward calls even when the audit log cannot be written (not for compliance use). */
        failOpen: z.boolean().default(false),
        /**
         * Final records that may wait for the database (disk full, locked): beyond it calls are
         * refused with 503 before they are forwarded, until it takes them again.
         */
        maxBacklog: z.number().int().positive().default(10_000),
        /** Signed checkpoints of the hash chain: every N records, every T seconds when anything is new. */
        checkpoint: z
          .object({
            everyRecords: z.number().int().positive().default(1000),
            everySeconds: z.number().positive().default(60),
            /** Also append each checkpoint (one JSON line) to this file, outside the database. */
            file: z.string().min(1).optional(),
            /** Also POST each checkpoint (JSON) to this URL. */
            webhook: z.url().optional(),
          })
          .strict()
          .prefault({}),
        /** The Ed25519 checkpoint/manifest key file (default `<log-db>.signing-key`, created on first start). */
        signingKey: z.string().min(1).optional(),
        /** Erase personal fields (user, task, session, trace, prompt/response hashes) of records older than N days. */
        retentionDays: z.number().positive().optional(),
      })
      .strict()
      .prefault({}),
    /**
     * Tags (`X-Attr-Tag-<Key>` headers and plugins' `attribute`): how many a call may carry, how
     * long a value may be, and which are personal (recorded behind the commitment, erased with the user).
     */
    tags: tagLimitsSchema.prefault({}),
    consent: consentConfigSchema,
    /**
     * The dashboard at `/dashboard` (default on). `enabled: false` serves no page, script or
     * sign-in there (404); the audit API it reads stays, behind its tokens.
     */
    dashboard: z
      .object({ enabled: z.boolean().default(true) })
      .strict()
      .prefault({}),
    /** Audit API tokens beside AGENT_ATTR_ADMIN_TOKEN / AGENT_ATTR_AUDITOR_TOKEN: `{ token | tokenEnv, role }`. */
    admin: z
      .object({ tokens: z.array(adminTokenSchema).default([]) })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

export function defineConfig(config: ConfigInput): ConfigInput {
  return config;
}
