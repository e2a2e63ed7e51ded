/**
 * The four benchmark scenarios: the request each one sends (the same bytes to every target) and
 * what the bench upstream answers. Bodies are sized like a small real call (~1 KiB prompt).
 */

export interface Scenario {
  name: string;
  path: "/v1/chat/completions" | "/v1/messages";
  body: string;
  headers: Record<string, string>;
  /** Attribution headers that vary per request (see LoadConfig.vary). */
  vary?: Record<string, number>;
  /** The target for agent-attr's CPU per call as a multiple of the bare forwarder's (DESIGN §8). */
  cpuTarget: number;
}

/** Sent to every target; agent-attr reads them, the others pass them on unused. */
export const attributionHeaders = {
  "x-agent-id": "bench-agent",
  "x-user-id": "bench-user",
  "x-task-context": "benchmark run",
} as const;

const prompt = "Summarise the following text in one sentence. ".repeat(22); // ~1 KiB

function openaiBody(stream: boolean): string {
  return JSON.stringify({
    model: "gpt-4o-mini",
    messages: [
      { role: "system", content: "You are a terse assistant." },
      { role: "user", content: prompt },
    ],
    max_tokens: 64,
    // Asked for by the client itself, so agent-attr need not rewrite the body and every target
    // gets the same upstream response (with the final usage chunk).
    ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
  });
}

function anthropicBody(stream: boolean): string {
  return JSON.stringify({
    model: "claude-3-5-haiku-latest",
    system: "You are a terse assistant.",
    messages: [{ role: "user", content: prompt }],
    max_tokens: 64,
    ...(stream ? { stream: true } : {}),
  });
}

const openaiHeaders = { "content-type": "application/json", authorization: "Bearer sk-bench", ...attributionHeaders };
const anthropicHeaders = {
  "content-type": "application/json",
  "x-api-key": "sk-ant-bench",
  "anthropic-version": "2023-06-01",
  ...attributionHeaders,
};

export const scenarios: readonly Scenario[] = [
  { name: "openai chat", path: "/v1/chat/completions", body: openaiBody(false), headers: openaiHeaders, cpuTarget: 1.8 },
  // The same call from a fleet: 200 agents, 5,000 users, 100,000 tasks, so the audit indexes take
  // inserts at random places, as in production (the other scenarios append to one key each).
  {
    name: "openai chat 5k users",
    path: "/v1/chat/completions",
    body: openaiBody(false),
    headers: openaiHeaders,
    vary: { "x-agent-id": 200, "x-user-id": 5_000, "x-task-context": 100_000 },
    cpuTarget: 2.0,
  },
  { name: "openai chat stream", path: "/v1/chat/completions", body: openaiBody(true), headers: openaiHeaders, cpuTarget: 1.5 },
  { name: "anthropic messages", path: "/v1/messages", body: anthropicBody(false), headers: anthropicHeaders, cpuTarget: 1.8 },
  { name: "anthropic messages stream", path: "/v1/messages", body: anthropicBody(true), headers: anthropicHeaders, cpuTarget: 1.5 },
];

/** Number of text deltas in a streamed answer (plus the protocol's own start/stop/usage events). */
export const streamDeltas = 20;
