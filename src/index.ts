// The public API of agent-attr: what configs and plugins import as "agent-attr".
export { defineConfig, type Config, type ConfigInput } from "./config/schema.ts";
export { definePlugin, PluginError } from "./plugin.ts";
export type * from "./plugin.ts";
export type * from "./pipeline/context.ts";
export { ProxyError, errorCatalogue, type ErrorCode } from "./errors.ts";
export { auditRecordSchema, noUsage, type AuditRecord, type Usage } from "./trail/record.ts";
export { recordFilterSchema } from "./store/filters.ts";
export type { RecordPage } from "./store/results.ts";
// The storage contract (src/store/contract.ts) and the SQLite driver, for plugins that provide or wrap a store.
export { TrailNotFoundError } from "./store/contract.ts";
export type * from "./store/contract.ts";
export { SqliteAuditStore } from "./store/sqlite/store.ts";
export { sqliteStore } from "./store/sqlite/index.ts";
export { postgresStore } from "./store/postgres/index.ts";
export { logDbStore } from "./store/open.ts";
export type { PgStoreOptions } from "./store/postgres/store.ts";
export { sqliteKeyStore } from "./store/sqlite/key-admin.ts";
export { openStoreFor, storeFor } from "./store/open.ts";
export type { ProxyKey, NewKeyRequest } from "./store/keys.ts";
export { SSEParser, parseJSON, type SSEEvent } from "./proxy/sse.ts";
export { DeferredText, TextSample, type TextSink } from "./proxy/deferred-text.ts";
export { fetchUpstream, globMatcher, modelMatcher, upstreamSocket, upstreamURL } from "./proxy/upstream.ts";
export { asCount, asObject, asString, isObject } from "./util.ts";
export { outputLimitFields } from "./pipeline/endpoints.ts";
// Helpers the built-in plugins use, so they need nothing a third-party plugin cannot import.
export { oneOrMany, parseOptions, presentedCredential, providerKeyFor } from "./plugin-helpers.ts";
export { checkIdentifier, erasureForms, headerText, normalizeIdentifier, type IdentifierRule } from "./identifiers.ts";
export { checkTagKey, checkTags, parseTagPair, parseTags, tagHeaderPrefix, tagKey, tagsJSON, type Tags } from "./tags.ts";
export { bodyIdentity, claudeCodeUserId, type BodyIdentity } from "./pipeline/body-identity.ts";
export { limitUsageSchema, type LimitUsage } from "./limit-usage.ts";
