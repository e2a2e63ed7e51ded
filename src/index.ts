// The public API of agent-attr: what configs and plugins import as "agent-attr".
export { defineConfig, type Config, type ConfigInput } from "./config/schema.ts";
export { definePlugin, PluginError } from "./plugin.ts";
export type * from "./plugin.ts";
export type * from "./pipeline/context.ts";
export { ProxyError, type ErrorCode } from "./errors.ts";
export { auditRecordSchema, noUsage, type AuditRecord, type Usage } from "./trail/record.ts";
export { recordFilterSchema, type AuditReader, type RecordPage } from "./store/sqlite/reader.ts";
export { SqliteAuditStore } from "./store/sqlite/store.ts";
export { SSEParser, parseJSON, type SSEEvent } from "./proxy/sse.ts";
export { DeferredText } from "./proxy/deferred-text.ts";
export { fetchUpstream, modelMatcher, upstreamURL } from "./proxy/upstream.ts";
export { asCount, asObject, asString, isObject } from "./util.ts";
export { outputLimitFields } from "./pipeline/endpoints.ts";
export { ProxyKeyStore, type ProxyKey } from "./store/sqlite/keys.ts";
export { checkIdentifier, erasureForms, headerText, normalizeIdentifier, type IdentifierRule } from "./identifiers.ts";
export { bodyIdentity, claudeCodeUserId, type BodyIdentity } from "./pipeline/body-identity.ts";
export { limitUsageSchema, type LimitUsage } from "./limit-usage.ts";
