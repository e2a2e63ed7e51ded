/** The record filter flags shared by `audit query`, `audit summary` and friends. */
export const filterArgs = {
  agent: { type: "string", description: "Only this agent" },
  user: { type: "string", description: "Only this user" },
  task: { type: "string", description: "Only this task context" },
  model: { type: "string", description: "Only this requested model" },
  provider: { type: "string", description: "Only this provider" },
  outcome: { type: "string", description: "completed|upstream_error|client_aborted|rejected|interrupted" },
  consent: { type: "string", description: "Only calls this consent covered (cns_...)" },
  purpose: { type: "string", description: "Only calls made for this purpose" },
  days: { type: "string", description: "Only the last N days" },
  since: { type: "string", description: "From this ISO 8601 time" },
  until: { type: "string", description: "Up to this ISO 8601 time" },
} as const;

type FilterFlags = { [K in keyof typeof filterArgs]?: string };

/** The filter flags' values, keyed as the filter schemas expect them. */
export function filterValues(args: FilterFlags): FilterFlags {
  const { agent, user, task, model, provider, outcome, consent, purpose, days, since, until } = args;
  return { agent, user, task, model, provider, outcome, consent, purpose, days, since, until };
}
