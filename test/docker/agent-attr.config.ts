// The replicas' config in the compose test (test/docker/compose.test.yml mounts it on /config):
// the default plugins, and tiers whose limits live in Redis (AGENT_ATTR_REDIS_URL), so one limit
// holds across both replicas. The trail is the PostgreSQL of AGENT_ATTR_LOG_DB.
import { defineConfig } from "agent-attr";
import { anthropic, headerAttribution, openai, pricing, tiers } from "agent-attr/plugins";

export default defineConfig({
  plugins: [
    openai(), // AGENT_ATTR_OPENAI_BASE_URL: the fake upstream
    anthropic(),
    headerAttribution(),
    pricing(),
    tiers({
      tiers: {
        standard: { requestsPerMinute: 600, per: ["user"] },
        limited: { requestsPerMinute: 10, per: ["user"] },
      },
      default: "standard",
      assign: [{ user: "limited-*", tier: "limited" }],
    }),
  ],
});
