// The built-in plugins, imported by configs as "agent-attr/plugins".
export { anthropic } from "./anthropic/index.ts";
export { azureOpenAI } from "./azure-openai/index.ts";
export { apiKeys } from "./api-keys/index.ts";
export { bedrock, type AwsCredentialProvider, type AwsCredentials, type BedrockOptions } from "./bedrock/index.ts";
export { gemini } from "./gemini/index.ts";
export { headerAttribution } from "./header-attribution/index.ts";
export { jwtAttribution } from "./jwt-attribution/index.ts";
export { openai } from "./openai/index.ts";
export { openaiCompatible } from "./openai-compatible/index.ts";
export { pricing, type PricingOptions } from "./pricing/index.ts";
export { postgresAudit } from "./postgres-audit/index.ts";
export { sqliteAudit } from "./sqlite-audit/index.ts";
export {
  LimitsUnavailableError,
  MemoryLimiterStore,
  RedisLimiterStore,
  redisLimiterStore,
  tiers,
  type ChargeResult,
  type LimiterStore,
  type Meter,
  type MeterState,
} from "./tiers/index.ts";
export { otel, otelWantedByEnvironment, type OtelOptions } from "./otel/index.ts";
