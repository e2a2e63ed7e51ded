/** The record filter flags shared by `audit query`, `audit summary` and friends. */
export const filterArgs = {
  agent: { type: "string", description: "Only this agent" },
  user: { type: "string", description: "Only this user" },
  task: { type: "string", description: "Only this task context" },
  model: { type: "string", description: "Only this requested model" },
  provider: { type: "string", description: "Only this provider" },
  outcome: { type: "string", description: "completed|upstream_error|client_aborted|rejected|interrupted" },
  tag: { type: "string", description: "Only records with this tag, KEY=VALUE (repeat for several: all must match)" },
  consent: { type: "string", description: "Only calls this consent covered (cns_...)" },
  purpose: { type: "string", description: "Only calls made for this purpose" },
  days: { type: "string", description: "Only the last N days" },
  since: { type: "string", description: "From this ISO 8601 time" },
  until: { type: "string", description: "Up to this ISO 8601 time" },
} as const;

type FilterFlags = { [K in keyof typeof filterArgs]?: string };

/** The filter flags' values, keyed as the filter schemas expect them; every `--tag` given (from the raw words). */
export function filterValues(args: FilterFlags, rawArgs: readonly string[] = []): Omit<FilterFlags, "tag"> & { tag?: string[] } {
  const { agent, user, task, model, provider, outcome, consent, purpose, days, since, until } = args;
  const tags = flagValues(rawArgs, "tag");
  return { agent, user, task, model, provider, outcome, consent, purpose, tag: tags.length > 0 ? tags : undefined, days, since, until };
}

/**
 * Every value of a flag that may be repeated (`--tag a=1 --tag b=2`, `--tag=a=1`): citty keeps only
 * the last, so they are read from the words as typed (../_run.ts has checked them already).
 */
export function flagValues(rawArgs: readonly string[], name: string): string[] {
  const values: string[] = [];
  const end = rawArgs.indexOf("--");
  const words = end === -1 ? rawArgs : rawArgs.slice(0, end);
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    if (word === `--${name}` && i + 1 < words.length) values.push(words[++i]!);
    else if (word.startsWith(`--${name}=`)) values.push(word.slice(name.length + 3));
  }
  return values;
}
