/**
 * agent-attr configuration: copy this file next to where you run `agent-attr proxy start`.
 * Every option is checked at start; a wrong one is reported by name with what was expected.
 * Without any config file the proxy runs on the same plugins as below except tiers() (no limits).
 */
import { defineConfig } from "agent-attr";
import { anthropic, headerAttribution, openai, pricing, sqliteAudit, tiers } from "agent-attr/plugins";

export default defineConfig({
  server: {
    port: 8080,
    host: "127.0.0.1", // a non-loopback address needs AGENT_ATTR_ADMIN_TOKEN
    maxBodyBytes: 32 * 1024 * 1024,
    upstreamTimeoutMs: 600_000, // time the upstream has to send response headers
    streamIdleTimeoutMs: 300_000, // longest silence inside a streamed response
    shutdownGraceMs: 30_000, // on SIGTERM, how long in-flight calls may finish
    maxUpstreamConnections: 4096, // calls in flight upstream at once; one more gets 503 proxy_busy
    bodyTimeoutMs: 30_000, // time a request body has to arrive in full (0 = none)
    maxConnectionsPerClient: 1024, // requests open per client address; 0 behind a load balancer
    maxUploadBytes: 512 * 1024 * 1024, // file uploads and unknown paths stream through, up to this size
    unknownPaths: "forward", // paths under /v1 the proxy does not know: "forward" (recorded) or "refuse" (404)
  },
  // Pipeline order: the first provider whose models match serves a call.
  plugins: [
    // A local OpenAI-compatible server, chosen by model name (must come before openai()):
    // openaiCompatible({ name: "ollama", baseURL: "http://127.0.0.1:11434/v1", models: ["llama*", "qwen*"] }),
    openai(), // AGENT_ATTR_OPENAI_BASE_URL overrides https://api.openai.com/v1
    anthropic(), // AGENT_ATTR_ANTHROPIC_BASE_URL overrides https://api.anthropic.com
    // Google's Gemini API (/v1beta/models/{model}:generateContent …); clients send x-goog-api-key. See docs/providers.md.
    // gemini(), // AGENT_ATTR_GEMINI_BASE_URL overrides https://generativelanguage.googleapis.com
    // Azure OpenAI (/openai/deployments/{d}/… and /openai/v1/…); clients send api-key or an Entra ID token.
    // azureOpenAI({ endpoint: "https://my-resource.openai.azure.com", deployments: { "prod-chat": "gpt-4o" } }),
    // AWS Bedrock (Converse, InvokeModel, their streams) at /model/{modelId}/…, re-signed with the proxy's SigV4
    // credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN): see docs/providers.md.
    // bedrock({ region: "us-east-1" }), // region default AWS_REGION; one per region with `name` and `models`
    headerAttribution(), // X-Agent-ID, X-User-ID, X-Task-Context, X-Session-ID, X-Parent-Agent-ID, traceparent
    // Keys mode: every call needs a key from `agent-attr keys create`; the proxy sends OPENAI_API_KEY / ANTHROPIC_API_KEY.
    // apiKeys({ onMismatch: "reject" }), // "record" keeps a spoofed X-Agent-ID/X-User-ID beside the verified identity
    // Prices from the bundled genai-prices data; your own prices (USD per million tokens) win.
    // Check what applies with `agent-attr pricing show MODEL`.
    pricing({
      models: {
        // "ft:gpt-4o-mini:acme*": { input: 0.3, cachedInput: 0.15, output: 1.2 },
      },
      providers: {
        // ollama: "free", // self-hosted openaiCompatible providers are free unless priced
      },
    }),
    tiers({
      tiers: {
        // shadow: true records what would be refused (error_type "shadow:rate_limited") and refuses nothing;
        // watch the audit trail, then set it to false.
        free: {
          requestsPerMinute: 20,
          tokensPerMinute: 40_000,
          tokensPerDay: 1_000_000,
          costPerDay: 5,
          per: ["user", "agent"],
          shadow: true,
        },
        pro: {
          requestsPerMinute: 300,
          tokensPerMinute: 400_000,
          costPerDay: 100,
          costPerMonth: 2_000,
          per: ["user", "key"],
          shadow: true,
          // Budget alerts: a POST to the webhook once per window, scope and threshold reached (see webhooks below).
          // alerts: [{ budget: "costPerMonth", thresholds: [0.5, 0.8, 1], webhook: "finance" }],
        },
        enterprise: { requestsPerMinute: 3_000, costPerMonth: 50_000, per: ["key"], shadow: true },
      },
      default: "free", // calls that no key (`keys create --tier`) and no rule below assign
      assign: [
        { user: "team-a-*", tier: "pro" },
        { agent: ["batch-*", "nightly-*"], tier: "enterprise" },
      ],
      maxOutputTokens: 4096, // output ceiling reserved when a request sets no max_tokens (an assumption, not a bound)
      webhooks: {
        // Signed with X-Agent-Attr-Signature (HMAC-SHA256 of "<t>.<body>"); format "slack" posts { text } instead.
        // finance: { url: "https://alerts.example.com/agent-attr", secretEnv: "AGENT_ATTR_ALERT_SECRET", format: "json" },
      },
      // Several replicas: set AGENT_ATTR_REDIS_URL to keep these limits in Redis, shared by all of them, or
      // store: redisLimiterStore({ url: "redis://127.0.0.1:6379", failOpen: false }), imported from "agent-attr/plugins".
    }),
    sqliteAudit(), // path: --log-db, AGENT_ATTR_LOG_DB or ./audit.db
    // One OpenTelemetry span per call (GenAI conventions, child of the caller's traceparent) over OTLP/HTTP.
    // Setting OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://localhost:4318) switches it on without this line;
    // OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES apply as usual. Import otel from "agent-attr/plugins".
    // otel({ endpoint: "http://localhost:4318/v1/traces", user: true }), // user: false keeps user ids off the spans
  ],
  audit: {
    failOpen: false, // true forwards calls even when the audit log cannot be written
    maxBacklog: 10_000, // final records that may wait for the database (disk full, locked) before calls get 503
  },
  admin: {
    // Audit API tokens beside AGENT_ATTR_ADMIN_TOKEN (admin) and AGENT_ATTR_AUDITOR_TOKEN (auditor: read, export, verify).
    tokens: [
      // { tokenEnv: "SOC_AUDITOR_TOKEN", role: "auditor", name: "soc" }, // the trail names its actions api:auditor:soc
    ],
  },
  dashboard: { enabled: true }, // false: no /dashboard on this port (the audit API stays)
});
