/**
 * Posting budget alerts to webhooks, in the background: a bounded queue, a few deliveries at a
 * time, retries with exponential backoff, and a flush with a deadline at shutdown.
 *
 * Each POST carries the alert as JSON (`format: "json"`), or `{ "text": ... }` (`format: "slack"`),
 * and, when the webhook has a secret, `X-Agent-Attr-Signature: t=<unix seconds>,v1=<hex>` where
 * v1 = HMAC-SHA256(secret, `${t}.${body}`) over the exact bytes sent. `t` is the time of the attempt,
 * so a receiver that refuses a `t` older than a few minutes cannot be replayed an old delivery;
 * `X-Agent-Attr-Delivery` is the alert's id, the same on every retry, for a receiver to drop
 * repeats. A webhook's URL is never logged (a Slack webhook's URL is its credential): log lines
 * name the webhook and the URL's origin.
 */
import { createHmac } from "node:crypto";
import type { Logger } from "agent-attr";
import type { Webhook } from "./options.ts";

/** What an alert says; the JSON body of a `json` webhook. */
export interface BudgetAlert {
  type: "budget_alert";
  /** The same on every retry (X-Agent-Attr-Delivery) and in the alert's chain event. */
  id: string;
  time: string;
  tier: string;
  /** cost_per_day, cost_per_month or tokens_per_day. */
  budget: string;
  threshold: number;
  scope: string;
  /** Whose budget: the user, agent, task or key the meter counts. */
  who: string;
  /** Spent in the window (calls in flight not included), and the budget, in `unit`. */
  used: number;
  limit: number;
  unit: "nano_usd" | "tokens";
  /** When the window ends and the budget starts again (ISO 8601). */
  window_end: string;
  /** The alert in one sentence (the `text` of a slack webhook). */
  text: string;
}

export type ResolvedWebhook = Omit<Webhook, "secretEnv"> & { name: string };

/** The webhooks with their secrets: `secretEnv` read now, so a missing variable stops the start. */
export function resolveWebhooks(webhooks: Record<string, Webhook>, env = process.env): Map<string, ResolvedWebhook> {
  const resolved = new Map<string, ResolvedWebhook>();
  for (const [name, { secretEnv, ...hook }] of Object.entries(webhooks)) {
    let secret = hook.secret;
    if (secretEnv) {
      secret = env[secretEnv];
      if (!secret || secret.length < 16)
        throw new Error(
          `Invalid options for plugin 'tiers': webhooks.${name}.secretEnv names ${secretEnv}, which is ${secret ? "shorter than 16 characters" : "not set"}; set it to a long random string (e.g. 'openssl rand -hex 32').`,
        );
    }
    resolved.set(name, { ...hook, secret, name });
  }
  return resolved;
}

/** The signature header's value for `body` sent at `unixSeconds`. */
export function signature(secret: string, unixSeconds: number, body: string): string {
  return `t=${unixSeconds},v1=${createHmac("sha256", secret).update(`${unixSeconds}.${body}`).digest("hex")}`;
}

const maxBackoffMs = 300_000;
const concurrency = 4;

interface Delivery {
  hook: ResolvedWebhook;
  alert: BudgetAlert;
  body: string;
  attempt: number;
}

type Outcome = "delivered" | "retry" | "refused";

export class WebhookDeliveries {
  log: Logger | null = null;
  /** Deliveries not finished: queued, being posted, or waiting to retry. */
  private pending = 0;
  private readonly queue: Delivery[] = [];
  private active = 0;
  private dropped = 0;
  private closing = false;
  private readonly stop = new AbortController();
  /** Wakes the deliveries waiting to retry (at shutdown, for their last attempt). */
  private readonly wake = new Set<() => void>();
  private readonly idle = new Set<() => void>();

  constructor(
    private readonly hooks: Map<string, ResolvedWebhook>,
    private readonly maxQueued: number,
  ) {}

  /** Queues an alert for its webhook; false when the queue is full (the alert is dropped, and logged). */
  enqueue(webhook: string, alert: BudgetAlert): boolean {
    const hook = this.hooks.get(webhook)!;
    if (this.closing || this.pending >= this.maxQueued) {
      if (this.dropped++ % 100 === 0)
        this.log?.error(
          `[plugin tiers] ${this.dropped} budget alert(s) dropped (${this.closing ? "the proxy is stopping" : `${this.maxQueued} wait for delivery already, maxQueuedAlerts`}); the latest, ${alert.id}, for webhook '${webhook}'. Each is in the chain as a budget_alert event.`,
        );
      return false;
    }
    const body = JSON.stringify(hook.format === "slack" ? { text: alert.text } : alert);
    this.pending++;
    this.queue.push({ hook, alert, body, attempt: 0 });
    this.pump();
    return true;
  }

  /** Alerts waiting or being delivered. */
  get size(): number {
    return this.pending;
  }

  /**
   * At shutdown: every alert still waiting gets one more attempt now (no more backoff), and this
   * resolves when all are done or `deadlineMs` passed — then attempts still running are aborted
   * and what was not delivered is logged.
   */
  async flush(deadlineMs: number): Promise<void> {
    this.closing = true;
    for (const wake of this.wake) wake();
    if (this.pending > 0) {
      const done = new Promise<void>((resolve) => this.idle.add(resolve));
      const timer = setTimeout(() => this.stop.abort(new Error("the proxy is stopping")), deadlineMs);
      // Aborted attempts end at once; the second bound only guards against one that does not.
      await Promise.race([done, Bun.sleep(deadlineMs + 1000)]);
      clearTimeout(timer);
    }
  }

  private pump(): void {
    while (this.active < concurrency && this.queue.length > 0) {
      const delivery = this.queue.shift()!;
      this.active++;
      void this.attempt(delivery).finally(() => {
        this.active--;
        this.pump();
      });
    }
  }

  private async attempt(delivery: Delivery): Promise<void> {
    delivery.attempt++;
    const { outcome, why } = await this.post(delivery);
    const { hook, alert } = delivery;
    if (outcome === "delivered") return this.finish();
    const last = outcome === "refused" || delivery.attempt >= hook.attempts || this.closing;
    if (last) {
      this.log?.error(
        `[plugin tiers] budget alert ${alert.id} was not delivered to webhook '${hook.name}' (${new URL(hook.url).origin}) after ${delivery.attempt} attempt(s): ${why}.${outcome === "refused" ? " Check the webhook's url and secret." : ""}`,
      );
      return this.finish();
    }
    this.log?.warn(
      `[plugin tiers] budget alert ${alert.id} to webhook '${hook.name}' failed (attempt ${delivery.attempt} of ${hook.attempts}: ${why}); retrying.`,
    );
    void this.later(Math.min(maxBackoffMs, hook.backoffMs * 2 ** (delivery.attempt - 1))).then(() => {
      this.queue.push(delivery);
      this.pump();
    });
  }

  /** Resolves after `ms`, or at once when the proxy starts stopping. */
  private later(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.wake.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.wake.add(wake);
      if (this.closing) wake();
    });
  }

  private finish(): void {
    if (--this.pending > 0) return;
    for (const resolve of this.idle) resolve();
    this.idle.clear();
  }

  private async post({ hook, alert, body }: Delivery): Promise<{ outcome: Outcome; why: string }> {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "user-agent": "agent-attr",
      "x-agent-attr-event": "budget_alert",
      "x-agent-attr-delivery": alert.id,
    };
    if (hook.secret) headers["x-agent-attr-signature"] = signature(hook.secret, Math.floor(Date.now() / 1000), body);
    try {
      const response = await fetch(hook.url, {
        method: "POST",
        headers,
        body,
        redirect: "manual",
        signal: AbortSignal.any([this.stop.signal, AbortSignal.timeout(hook.timeoutMs)]),
      });
      await response.body?.cancel().catch(() => {});
      if (response.status >= 200 && response.status < 300) return { outcome: "delivered", why: "" };
      const retry = response.status === 408 || response.status === 429 || response.status >= 500;
      return { outcome: retry ? "retry" : "refused", why: `the receiver answered ${response.status}` };
    } catch (error) {
      if (error instanceof Error && error.name === "TimeoutError")
        return { outcome: "retry", why: `no answer within ${hook.timeoutMs} ms` };
      // Never the URL itself: a Slack webhook's URL is its credential.
      const message = (error instanceof Error ? error.message : String(error)).replaceAll(hook.url, new URL(hook.url).origin);
      return { outcome: "retry", why: message };
    }
  }
}
