// The built-in plugins, imported by configs as "agent-attr/plugins".
export { anthropic } from "./anthropic/index.ts";
export { headerAttribution } from "./header-attribution/index.ts";
export { openai } from "./openai/index.ts";
export { openaiCompatible } from "./openai-compatible/index.ts";
export { pricing, type PricingOptions } from "./pricing/index.ts";
export { sqliteAudit } from "./sqlite-audit/index.ts";
