/**
 * `redisLimiterStore({...})`: limiter state in Redis, shared by every replica, so a limit of N per
 * minute admits N in total however many proxies serve the calls. `charge` and `adjust` are one
 * atomic script each, on the Redis server's clock (./redis-scripts.ts).
 *
 * Reservations of a replica that died: a charge holds its window amounts under this process's
 * *owner*, whose lease in Redis the process renews every `leaseMs / 3`. When a process stops
 * renewing (killed, partitioned), its holds stop counting once its lease lapses, at most `leaseMs`
 * after its last renewal, and are dropped as they are next read. A process that finds its own
 * lease lapsed (Redis was away longer than the lease) takes a new owner; its calls in flight then
 * settle as spent what they really used.
 *
 * Unreachable Redis: every operation answers or fails within `timeoutMs`, connecting included
 * (./redis-connection.ts). `charge` then throws LimitsUnavailableError
 * (the tiers plugin answers 503 `limits_unavailable`, or forwards the call flagged when
 * `failOpen`); an `adjust` that could not be sent is queued and retried when Redis answers again.
 * A charge whose outcome is unknown (no answer in time, connection lost) may still be applied by
 * the server: an answer that arrives late is given back at once, and the owner is changed so that
 * a hold nobody will settle lapses with the old lease.
 */
import { parseOptions } from "agent-attr";
import type { Logger } from "agent-attr";
import { z } from "zod";
import { NotSent, RedisConnection, TimedOut, messageOf, script, type Outcomes, type Script } from "./redis-connection.ts";
import { adjustScript, chargeScript, claimScript, peekScript, renewScript } from "./redis-scripts.ts";
import {
  LimitsUnavailableError,
  gcraState,
  windowState,
  type ChargeResult,
  type LimiterStore,
  type Meter,
  type MeterState,
} from "./store.ts";

const redisURL = z.string().refine((url) => /^(redis|rediss|valkey|valkeys):\/\/[^/]/.test(url), {
  message: "expected a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379",
});

export const redisStoreOptionsSchema = z
  .object({
    /** Default: AGENT_ATTR_REDIS_URL. */
    url: redisURL.optional(),
    /** Prefix of every key (use a hash tag, `{agent-attr}:`, on Redis Cluster). */
    prefix: z.string().min(1).default("agent-attr:"),
    /** Redis unreachable: forward calls unchecked (flagged in their records) instead of 503. */
    failOpen: z.boolean().default(false),
    /** Longest wait for Redis per operation, connecting included (ms). */
    timeoutMs: z.number().int().positive().default(200),
    /** How long the reservations of a process that stopped renewing them still count (ms). */
    leaseMs: z.number().int().positive().default(30_000),
    /** Whose clock meters run on: the Redis server's (replicas agree), or the `now` callers pass (tests). */
    clock: z.enum(["redis", "caller"]).default("redis"),
  })
  .strict();
export type RedisStoreOptions = z.output<typeof redisStoreOptionsSchema> & { url: string };

export function redisLimiterStore(options: z.input<typeof redisStoreOptionsSchema> = {}): RedisLimiterStore {
  const opts = parseOptions("tiers", redisStoreOptionsSchema, options);
  const url = opts.url ?? process.env.AGENT_ATTR_REDIS_URL;
  if (!url) throw new Error("redisLimiterStore() needs a url, or AGENT_ATTR_REDIS_URL in the environment (e.g. redis://127.0.0.1:6379).");
  const parsed = redisURL.safeParse(url);
  if (!parsed.success) throw new Error(`AGENT_ATTR_REDIS_URL: ${parsed.error.issues[0]!.message}.`);
  return new RedisLimiterStore({ ...opts, url });
}

/** Adjustments not sent while Redis was unreachable wait at most this many. */
const maxPending = 10_000;
/** Expiries get this slack when meters follow the callers' clock rather than the one Redis expires keys by. */
const callerClockMargin = 3_600_000;

const scripts = {
  charge: script(chargeScript),
  adjust: script(adjustScript),
  renew: script(renewScript),
  peek: script(peekScript),
  claim: script(claimScript),
};

interface PendingAdjust {
  keys: string[];
  args: string[];
}

const newOwner = () => Bun.randomUUIDv7().replaceAll("-", "");

export class RedisLimiterStore implements LimiterStore {
  readonly failOpen: boolean;
  private readonly redis: RedisConnection;
  private owner = newOwner();
  /** True until a charge has registered the owner's lease. */
  private fresh = true;
  private pending: PendingAdjust[] = [];
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(private readonly opts: RedisStoreOptions) {
    this.failOpen = opts.failOpen;
    const meanwhile = opts.failOpen
      ? "failOpen is set, so calls under a tier are forwarded unchecked (error_type limits_unavailable:fail_open)"
      : "calls under a tier are refused with 503 limits_unavailable";
    this.redis = new RedisConnection(opts.url, opts.timeoutMs, meanwhile);
  }

  async open(log: Logger): Promise<void> {
    this.redis.log = log;
    if (this.timer) return;
    await this.redis.connect(this.redis.deadline()).catch(() => {}); // logged; calls get 503 until it answers
    this.timer = setInterval(() => void this.tick(), Math.max(1, Math.floor(this.opts.leaseMs / 3)));
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush().catch(() => {});
    if (this.pending.length > 0)
      this.redis.log.error(
        `[plugin tiers] ${this.pending.length} limiter adjustments could not reach Redis at ${this.redis.where} before shutdown and are lost.`,
      );
    this.redis.close();
  }

  async charge(meters: readonly Meter[], now: number): Promise<ChargeResult> {
    const deadline = this.redis.deadline();
    const keys = [this.key("leases"), ...meters.map((meter) => this.meterKey(meter))];
    const amounts = meters.flatMap((m) =>
      (m.kind === "gcra" ? ["g", m.limit, m.periodMs, m.amount] : ["w", m.limit, m.calendar, m.amount]).map(String),
    );
    for (let attempt = 0; attempt < 2; attempt++) {
      const owner = this.owner;
      const args = [this.clock(now), owner, this.fresh ? "1" : "0", String(this.opts.leaseMs), String(this.margin()), ...amounts];
      let reply: string[];
      try {
        reply = (await this.run(scripts.charge, keys, args, deadline, {
          // Applied after all, though its caller was told otherwise: give it back.
          late: (answer) => this.giveBack(meters, owner, answer as string[]),
          unknown: () => this.rotate(owner),
        })) as string[];
      } catch (error) {
        throw new LimitsUnavailableError(unavailableMessage, this.failOpen, { cause: error });
      }
      if (reply[0] === "lease") {
        this.rotate(owner);
        continue;
      }
      if (owner === this.owner) this.fresh = false;
      return parseCharge(meters, reply, owner);
    }
    throw new LimitsUnavailableError(unavailableMessage, this.failOpen);
  }

  async adjust(adjustments: readonly { meter: Meter; delta: number }[], now: number, hold?: string | null): Promise<void> {
    if (adjustments.length === 0) return;
    const keys = [this.key("leases"), ...adjustments.map(({ meter }) => this.meterKey(meter))];
    const args = [
      this.clock(now),
      hold ?? "",
      String(this.margin()),
      ...adjustments.flatMap(({ meter: m, delta }) =>
        (m.kind === "gcra"
          ? ["g", m.limit, m.periodMs, m.amount, delta, ""]
          : ["w", m.limit, m.calendar, m.amount, delta, m.endsAt ?? ""]
        ).map(String),
      ),
    ];
    await this.send({ keys, args });
  }

  async peek(meters: readonly Meter[], now: number): Promise<MeterState[]> {
    if (meters.length === 0) return [];
    const keys = [this.key("leases"), ...meters.map((meter) => this.meterKey(meter))];
    const args = [this.clock(now), ...meters.flatMap((m) => [m.kind === "gcra" ? "g" : "w", m.kind === "window" ? m.calendar : ""])];
    let reply: string[];
    try {
      reply = (await this.run(scripts.peek, keys, args, this.redis.deadline(), { unknown: () => {} })) as string[];
    } catch (error) {
      throw new LimitsUnavailableError(
        `The limits cannot be read from Redis at ${this.redis.where} right now (${messageOf(error)}).`,
        this.failOpen,
        { cause: error },
      );
    }
    const at = Number(reply[0]);
    return meters.map((meter, i) => {
      const [a, b, c] = reply.slice(1 + 3 * i, 4 + 3 * i) as [string, string, string];
      const idle = { ...meter, amount: 0 };
      return idle.kind === "gcra"
        ? gcraState(idle, a === "" ? null : Number(a), at)
        : windowState(idle, Number(a), Number(b), Number(c), at);
    });
  }

  /**
   * One SET NX in Redis: of every replica, the first to claim a marker gets true. An answer that
   * never comes counts as not claimed (the caller tries again later; had Redis set it, that alert is lost).
   */
  async claim(marker: string, expiresAt: number, now: number): Promise<boolean> {
    const keys = [this.key("leases"), this.key(`alert:${marker}`)];
    const args = [this.clock(now), String(expiresAt), String(this.margin())];
    try {
      return Number(await this.run(scripts.claim, keys, args, this.redis.deadline(), { unknown: () => {} })) === 1;
    } catch (error) {
      throw new LimitsUnavailableError(
        `Redis at ${this.redis.where} did not answer a budget alert's claim (${messageOf(error)}).`,
        this.failOpen,
        {
          cause: error,
        },
      );
    }
  }

  /** Runs a script; once Redis answers, adjustments that waited for it are sent too. */
  private async run(code: Script, keys: string[], args: string[], deadline: number, outcomes: Outcomes): Promise<unknown> {
    const answer = await this.redis.run(code, keys, args, deadline, outcomes);
    if (this.pending.length > 0) void this.flush();
    return answer;
  }

  /**
   * Sends one adjustment. One that Redis did not apply (never reached it, or refused before running:
   * out of memory, read-only) waits in `pending` for the next chance; one whose outcome cannot be
   * known is not sent again (it might count twice): its hold lapses with the owner, which is
   * abandoned — as with any other failure, so no hold outlives the owner's lease.
   */
  private async send(adjustment: PendingAdjust): Promise<void> {
    const hold = adjustment.args[1]!;
    try {
      await this.run(scripts.adjust, adjustment.keys, adjustment.args, this.redis.deadline(), {
        unknown: () => this.rotate(hold),
      });
    } catch (error) {
      if (error instanceof NotSent) return this.queue(adjustment);
      this.rotate(hold);
      if (!(error instanceof TimedOut))
        this.redis.log.error(`[plugin tiers] a limiter adjustment failed in Redis at ${this.redis.where}: ${messageOf(error)}`);
    }
  }

  private queue(adjustment: PendingAdjust): void {
    if (this.pending.length >= maxPending) {
      this.pending.shift();
      if (this.pending.length === maxPending - 1) {
        this.redis.log.error(
          `[plugin tiers] more than ${maxPending} limiter adjustments wait for Redis at ${this.redis.where}; the oldest are dropped.`,
        );
      }
    }
    this.pending.push(adjustment);
  }

  /** Sends what waited, once each: one Redis refuses again waits for the next tick, not a tight loop. */
  private async flush(): Promise<void> {
    let left = this.pending.length;
    while (left > 0 && this.redis.connected) {
      const batch = this.pending.splice(0, Math.min(256, left));
      left -= batch.length;
      await Promise.all(batch.map((adjustment) => this.send(adjustment)));
    }
  }

  /** Renews the owner's lease (one found gone means a new owner) and sends what waited for Redis. */
  private async tick(): Promise<void> {
    try {
      if (!this.fresh) {
        const owner = this.owner;
        const args = [this.clock(Date.now()), owner, String(this.opts.leaseMs)];
        const alive = await this.run(scripts.renew, [this.key("leases")], args, this.redis.deadline(), { unknown: () => {} });
        if (Number(alive) !== 1) {
          this.redis.log.warn(
            `[plugin tiers] this process's lease in Redis at ${this.redis.where} is gone (Redis was out of reach longer than leaseMs, ${this.opts.leaseMs} ms, or restarted empty): its reservations no longer count, and its calls in flight settle as spent.`,
          );
          this.rotate(owner);
        }
      } else {
        await this.redis.connect(this.redis.deadline());
      }
      await this.flush();
    } catch {
      // Logged by the connection; the next tick tries again.
    }
  }

  /** Gives back a charge that was applied after its caller had been told Redis did not answer. */
  private giveBack(meters: readonly Meter[], owner: string, answer: string[]): void {
    if (answer[0] !== "ok" || answer[2] !== "") return;
    const { states } = parseCharge(meters, answer, owner);
    const adjustments = meters.map((meter, i) => ({
      meter: meter.kind === "window" ? { ...meter, endsAt: states[i]!.endsAt } : meter,
      delta: -meter.amount,
    }));
    void this.adjust(adjustments, Number(answer[1]), owner);
  }

  /** Abandons `owner` (if it is still the current one): its holds lapse with its lease. */
  private rotate(owner: string): void {
    if (owner !== this.owner) return;
    this.owner = newOwner();
    this.fresh = true;
  }

  private clock(now: number): string {
    return this.opts.clock === "caller" ? String(now) : "";
  }

  private margin(): number {
    return this.opts.clock === "caller" ? callerClockMargin : 0;
  }

  private key(name: string): string {
    return `${this.opts.prefix}${name}`;
  }

  private meterKey(meter: Meter): string {
    return this.key(`${meter.kind === "gcra" ? "g" : "w"}:${meter.key}`);
  }
}

/** What a caller is told when Redis does not answer (operators find the cause in the log). */
const unavailableMessage =
  "Rate limits and budgets cannot be checked right now (the proxy's limiter store, Redis, does not answer), so the call was not forwarded. " +
  "Retry in a few seconds; if it persists, the operator must check Redis (AGENT_ATTR_REDIS_URL), or set failOpen in redisLimiterStore() to forward calls unchecked while it is down.";

function parseCharge(meters: readonly Meter[], reply: string[], owner: string): ChargeResult {
  const now = Number(reply[1]);
  const refused = reply[2] === "" ? null : Number(reply[2]);
  const states = meters.map((meter, i) => {
    const [a, b, c] = reply.slice(3 + 3 * i, 6 + 3 * i) as [string, string, string];
    return meter.kind === "gcra"
      ? gcraState(meter, a === "" ? null : Number(a), now)
      : windowState(meter, Number(a), Number(b), Number(c), now);
  });
  return { refused, states, hold: refused === null ? owner : null, now };
}
