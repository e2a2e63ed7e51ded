/** The `tiers({...})` options: named tiers, who gets which, and how calls are estimated. */
import { oneOrMany, tagKey } from "agent-attr";
import { z } from "zod";
import type { LimiterStore } from "./store.ts";

const scopes = ["user", "agent", "task", "key"] as const;
/** Whom a limit counts: a fixed identity, or the value of one tag (`tag:team`: one meter per team). */
export type Scope = (typeof scopes)[number] | `tag:${string}`;

const scopeSchema = z.string().transform((scope, ctx): Scope => {
  if ((scopes as readonly string[]).includes(scope)) return scope as Scope;
  const key = /^tag:/i.test(scope) ? tagKey(scope.slice(4)) : null;
  if (key !== null) return `tag:${key}`;
  ctx.addIssue({ code: "custom", message: `'${scope}' is not a scope: use ${scopes.join(", ")} or tag:KEY (e.g. tag:team)` });
  return z.NEVER;
});

/** Tag key → globs its value must match (keys read as tags are: lower-case, `_` as `-`). */
const tagRules = z.record(z.string(), oneOrMany).transform((rules, ctx) => {
  const checked: Record<string, readonly string[]> = {};
  for (const [raw, globs] of Object.entries(rules)) {
    const key = tagKey(raw);
    if (key === null) ctx.addIssue({ code: "custom", path: [raw], message: `'${raw}' is not a tag key (a-z, 0-9 and '-')` });
    else checked[key] = typeof globs === "string" ? [globs] : globs;
  }
  return checked;
});

const positiveInt = z.number().int().positive();
const usd = z.number().positive();

const tierSchema = z
  .object({
    /** Requests per minute (GCRA: a burst of this many, then one every 60/N s). */
    requestsPerMinute: positiveInt.optional(),
    /** Input + output tokens per minute (GCRA, reserved from an estimate, settled to the real count). */
    tokensPerMinute: positiveInt.optional(),
    /** Input + output tokens per UTC day. */
    tokensPerDay: positiveInt.optional(),
    /** Cost budget per UTC day, in USD (402 when exhausted). */
    costPerDay: usd.optional(),
    /** Cost budget per UTC calendar month, in USD. */
    costPerMonth: usd.optional(),
    /** Whom each limit counts: every listed scope gets its own meter. */
    per: z.array(scopeSchema).min(1).default(["key", "agent", "user"]),
    /** Record what would have been refused (`error_type: "shadow:rate_limited"`), refuse nothing. */
    shadow: z.boolean().default(false),
  })
  .strict();
export type Tier = z.output<typeof tierSchema>;

/** One assignment rule: every field given must match (globs); the first matching rule wins. */
const ruleSchema = z
  .object({
    tier: z.string().min(1),
    user: oneOrMany.optional(),
    agent: oneOrMany.optional(),
    task: oneOrMany.optional(),
    key: oneOrMany.optional(),
    /** Tags the call must carry, each matching its globs, e.g. `{ team: "platform" }` (a tag the credential does not fix never matches in keys/jwt mode). */
    tags: tagRules.optional(),
  })
  .strict()
  .refine((rule) => rule.user || rule.agent || rule.task || rule.key || (rule.tags && Object.keys(rule.tags).length > 0), {
    message: "an assign rule needs user, agent, task, key or tags",
  });

export const optionsSchema = z
  .object({
    tiers: z.record(z.string().min(1), tierSchema).refine((t) => Object.keys(t).length > 0, { message: "define at least one tier" }),
    /** Tier of calls no key and no rule assigns. */
    default: z.string().min(1),
    /** Tier by identity, after the tier of the call's key (`keys create --tier`). */
    assign: z.array(ruleSchema).default([]),
    /**
     * Output ceiling reserved for a request that sets no max_tokens / max_completion_tokens /
     * max_output_tokens. Under a cost budget it is also sent as the call's limit (see capOutput).
     */
    maxOutputTokens: positiveInt.optional(),
    /**
     * A call under a cost budget that sets no output limit is sent `maxOutputTokens` as its limit
     * (in the provider's own field), so the budget's reservation is a real bound (default true).
     * false: the body is never changed, and such a call may cost more than was reserved.
     */
    capOutput: z.boolean().default(true),
    /** @deprecated the former name of `maxOutputTokens`. */
    defaultOutputTokens: positiveInt.optional(),
    /** Where limiter state lives (default: this process's memory). */
    store: z.custom<LimiterStore>((v) => typeof v === "object" && v !== null && "charge" in v && "adjust" in v).optional(),
    /** Clock in epoch ms (tests). */
    now: z.custom<() => number>((v) => typeof v === "function").optional(),
  })
  .strict()
  .transform(({ defaultOutputTokens, ...opts }) => ({ ...opts, maxOutputTokens: opts.maxOutputTokens ?? defaultOutputTokens ?? 4096 }))
  .superRefine((opts, ctx) => {
    const known = Object.keys(opts.tiers);
    const check = (tier: string, path: (string | number)[]) => {
      if (!known.includes(tier)) ctx.addIssue({ code: "custom", path, message: `unknown tier '${tier}'; defined: ${known.join(", ")}` });
    };
    check(opts.default, ["default"]);
    for (const [i, rule] of opts.assign.entries()) check(rule.tier, ["assign", i, "tier"]);
  });
export type TiersOptions = z.output<typeof optionsSchema>;
