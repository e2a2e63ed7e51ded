/** The record filter flags shared by `audit query`, `audit summary` and friends. */
export const filterArgs = {
  agent: { type: "string", description: "Only this agent" },
  user: { type: "string", description: "Only this user" },
  task: { type: "string", description: "Only this task context" },
  model: { type: "string", description: "Only this requested model" },
  provider: { type: "string", description: "Only this provider" },
  outcome: { type: "string", description: "completed|upstream_error|client_aborted|rejected|interrupted" },
  tag: { type: "string", description: "Only records with this tag, KEY=VALUE (repeat for several: all must match)" },
  days: { type: "string", description: "Only the last N days" },
  since: { type: "string", description: "From this ISO 8601 time" },
  until: { type: "string", description: "Up to this ISO 8601 time" },
} as const;

type FilterFlags = { [K in keyof typeof filterArgs]?: string | string[] };

/** The filter flags' values, keyed as the filter schemas expect them (a repeated `--tag` as a list). */
export function filterValues(args: FilterFlags): FilterFlags {
  const { agent, user, task, model, provider, outcome, tag, days, since, until } = args;
  return { agent, user, task, model, provider, outcome, tag, days, since, until };
}
