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

/** The limits an alert can watch: those counted per calendar window (a UTC day or month). */
export const budgets = ["tokensPerDay", "costPerDay", "costPerMonth"] as const;
export type Budget = (typeof budgets)[number];

/** A budget's alerts: one webhook call per window, scope and threshold passed (./alerts.ts). */
const alertSchema = z
  .object({
    /** Which of the tier's budgets to watch. */
    budget: z.enum(budgets),
    /** Fractions of the budget spent (0 < t ≤ 1) that each raise one alert per window and scope. */
    thresholds: z
      .array(z.number().gt(0).max(1))
      .min(1)
      .default([0.5, 0.8, 1])
      .transform((list) => [...new Set(list)].sort((a, b) => a - b)),
    /** The name of the webhook (in the plugin's `webhooks`) the alert is posted to. */
    webhook: z.string().min(1),
  })
  .strict();
export type Alert = z.output<typeof alertSchema>;

/** Where alerts are posted (./webhook.ts). */
const webhookSchema = z
  .object({
    url: z.url({ protocol: /^https?$/, error: "expected an http:// or https:// URL" }),
    /** "json": the alert event; "slack": `{ "text": ... }`, what Slack (and Mattermost) incoming webhooks take. */
    format: z.enum(["json", "slack"]).default("json"),
    /** The HMAC-SHA256 key of the `X-Agent-Attr-Signature` header (at least 16 characters). */
    secret: z.string().min(16, "a webhook secret must be at least 16 characters").optional(),
    /** The environment variable that holds the secret (read when tiers() is called). */
    secretEnv: z.string().min(1).optional(),
    /** Attempts per alert, the first included (retried on network errors, timeouts, 408, 429 and 5xx). */
    attempts: z.number().int().min(1).max(20).default(6),
    /** Wait before the first retry (ms); doubled for each next one, at most 5 minutes. */
    backoffMs: positiveInt.default(1000),
    /** Longest wait for the receiver's answer per attempt (ms). */
    timeoutMs: positiveInt.default(5000),
  })
  .strict()
  .refine((hook) => !(hook.secret && hook.secretEnv), { message: "give secret or secretEnv, not both" });
export type Webhook = z.output<typeof webhookSchema>;

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
    /** Webhook alerts as budgets fill up (tokensPerDay, costPerDay, costPerMonth). */
    alerts: z.array(alertSchema).default([]),
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
    /** Named webhooks that tiers' `alerts` post to. */
    webhooks: z.record(z.string().min(1), webhookSchema).default({}),
    /** Alerts that may wait for delivery (retries included); past it new ones are dropped and logged. */
    maxQueuedAlerts: positiveInt.default(1000),
    /** Longest wait at shutdown for alerts still being delivered (ms). */
    alertFlushMs: positiveInt.default(5000),
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
    const hooks = Object.keys(opts.webhooks);
    for (const [name, tier] of Object.entries(opts.tiers)) {
      for (const [i, alert] of tier.alerts.entries()) {
        const path = ["tiers", name, "alerts", i];
        if (tier[alert.budget] === undefined)
          ctx.addIssue({ code: "custom", path: [...path, "budget"], message: `tier '${name}' sets no ${alert.budget} to alert on` });
        if (!hooks.includes(alert.webhook))
          ctx.addIssue({
            code: "custom",
            path: [...path, "webhook"],
            message: `unknown webhook '${alert.webhook}'; ${hooks.length ? `defined: ${hooks.join(", ")}` : "define it in the plugin's webhooks"}`,
          });
      }
    }
    for (const [name, hook] of Object.entries(opts.webhooks)) {
      if (hook.format === "json" && !hook.secret && !hook.secretEnv)
        ctx.addIssue({
          code: "custom",
          path: ["webhooks", name],
          message: "a json webhook needs a secret or secretEnv, so its receiver can check the X-Agent-Attr-Signature header",
        });
    }
  });
export type TiersOptions = z.output<typeof optionsSchema>;
