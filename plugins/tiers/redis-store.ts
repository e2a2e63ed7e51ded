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
 * Unreachable Redis: every operation answers or fails within `timeoutMs` (connect included; the
 * client never queues commands while disconnected). `charge` then throws LimitsUnavailableError
 * (the tiers plugin answers 503 `limits_unavailable`, or forwards the call flagged when
 * `failOpen`); an `adjust` that could not be sent is queued and retried when Redis answers again.
 * A charge whose outcome is unknown (no answer in time, connection lost) may still be applied by
 * the server: an answer that arrives late is given back at once, and the owner is changed so that
 * a hold nobody will settle lapses with the old lease.
 */
import { RedisClient } from "bun";
import type { Logger } from "agent-attr";
import { z } from "zod";
import { parseOptions } from "../options.ts";
import { adjustScript, chargeScript, renewScript } from "./redis-scripts.ts";
import { LimitsUnavailableError, gcraState, windowState, type ChargeResult, type LimiterStore, type Meter } from "./store.ts";

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

const sha1 = (text: string) => new Bun.CryptoHasher("sha1").update(text).digest("hex");
const scripts = {
  charge: { source: chargeScript, sha: sha1(chargeScript) },
  adjust: { source: adjustScript, sha: sha1(adjustScript) },
  renew: { source: renewScript, sha: sha1(renewScript) },
};
type Script = (typeof scripts)[keyof typeof scripts];

/** A command that never reached Redis: nothing was applied, so it is safe to send again. */
class NotSent extends Error {}
class TimedOut extends Error {}

interface PendingAdjust {
  keys: string[];
  args: string[];
}

const silent: Logger = { info() {}, warn() {}, error() {} };
const newOwner = () => Bun.randomUUIDv7().replaceAll("-", "");

export class RedisLimiterStore implements LimiterStore {
  readonly failOpen: boolean;
  private readonly client: RedisClient;
  /** The URL without credentials, for log lines. */
  private readonly where: string;
  private owner = newOwner();
  /** True until a charge has registered the owner's lease. */
  private fresh = true;
  private connecting: Promise<void> | null = null;
  private pending: PendingAdjust[] = [];
  private timer: ReturnType<typeof setInterval> | null = null;
  private log: Logger = silent;
  /** Why Redis is unreachable, while it is (so an outage is logged once, and its end). */
  private down: string | null = null;

  constructor(private readonly opts: RedisStoreOptions) {
    this.failOpen = opts.failOpen;
    // No reconnect loop and no offline queue inside the client: a command against a dead server
    // fails at once, and the store reconnects itself on the next operation (within timeoutMs).
    this.client = new RedisClient(opts.url, {
      connectionTimeout: opts.timeoutMs,
      autoReconnect: false,
      enableOfflineQueue: false,
    });
    const url = new URL(opts.url);
    this.where = `${url.protocol}//${url.host}${url.pathname === "/" ? "" : url.pathname}`;
  }

  async open(log: Logger): Promise<void> {
    this.log = log;
    if (this.timer) return;
    try {
      await this.connect(performance.now() + this.opts.timeoutMs);
      this.markUp();
    } catch (error) {
      this.markDown(error);
    }
    this.timer = setInterval(() => void this.tick(), Math.max(1, Math.floor(this.opts.leaseMs / 3)));
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush().catch(() => {});
    if (this.pending.length > 0) this.log.error(`[plugin tiers] ${this.pending.length} limiter adjustments could not reach Redis at ${this.where} before shutdown and are lost.`);
    this.client.close();
  }

  async charge(meters: readonly Meter[], now: number): Promise<ChargeResult> {
    const deadline = performance.now() + this.opts.timeoutMs;
    const keys = [this.key("leases"), ...meters.map((meter) => this.meterKey(meter))];
    const amounts = meters.flatMap((m) => (m.kind === "gcra" ? ["g", m.limit, m.periodMs, m.amount] : ["w", m.limit, m.calendar, m.amount]).map(String));
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
        (m.kind === "gcra" ? ["g", m.limit, m.periodMs, m.amount, delta, ""] : ["w", m.limit, m.calendar, m.amount, delta, m.endsAt ?? ""]).map(String),
      ),
    ];
    await this.send({ keys, args });
  }

  /** Sends one adjustment; one that never reached Redis waits in `pending` for the next chance. */
  private async send(adjustment: PendingAdjust): Promise<void> {
    try {
      await this.run(scripts.adjust, adjustment.keys, adjustment.args, performance.now() + this.opts.timeoutMs, {
        unknown: () => this.rotate(adjustment.args[1]!),
      });
    } catch (error) {
      if (error instanceof NotSent) this.queue(adjustment);
      else if (!(error instanceof TimedOut)) this.log.error(`[plugin tiers] limiter adjustment failed in Redis at ${this.where}: ${messageOf(error)}`);
    }
  }

  private queue(adjustment: PendingAdjust): void {
    if (this.pending.length >= maxPending) {
      this.pending.shift();
      if (this.pending.length === maxPending - 1) this.log.error(`[plugin tiers] more than ${maxPending} limiter adjustments wait for Redis at ${this.where}; the oldest are dropped.`);
    }
    this.pending.push(adjustment);
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0 && this.client.connected) {
      const batch = this.pending.splice(0, 256);
      await Promise.all(batch.map((adjustment) => this.send(adjustment)));
    }
  }

  /** Renews the owner's lease (a lapsed one means a new owner) and sends queued adjustments. */
  private async tick(): Promise<void> {
    try {
      if (!this.fresh) {
        const owner = this.owner;
        const alive = await this.run(scripts.renew, [this.key("leases")], [this.clock(Date.now()), owner, String(this.opts.leaseMs)], performance.now() + this.opts.timeoutMs, {
          unknown: () => {},
        });
        if (Number(alive) !== 1) {
          this.log.warn(`[plugin tiers] this process's reservations in Redis at ${this.where} lapsed (Redis was out of reach longer than leaseMs, ${this.opts.leaseMs} ms); calls in flight will settle as spent.`);
          this.rotate(owner);
        }
      } else if (!this.client.connected) {
        await this.connect(performance.now() + this.opts.timeoutMs);
      }
      await this.flush();
    } catch {
      // Logged by run(); the next tick tries again.
    }
  }

  /**
   * Runs a script within the deadline (connecting first if need be). `late` gets an answer that
   * arrived after the deadline; `unknown` runs when a sent command's outcome cannot be known.
   */
  private async run(
    script: Script,
    keys: string[],
    args: string[],
    deadline: number,
    handlers: { late?: (answer: unknown) => void; unknown: () => void },
  ): Promise<unknown> {
    try {
      await this.connect(deadline);
    } catch (error) {
      this.markDown(error);
      throw new NotSent(messageOf(error));
    }
    const call = (command: "EVALSHA" | "EVAL", body: string) => this.client.send(command, [body, String(keys.length), ...keys, ...args]);
    const command = call("EVALSHA", script.sha).catch((error: unknown) => {
      // The script cache is empty after a Redis restart: send the source (which caches it again).
      if (messageOf(error).startsWith("NOSCRIPT")) return call("EVAL", script.source);
      throw error;
    });
    const timer = Promise.withResolvers<"timeout">();
    const timeout = setTimeout(() => timer.resolve("timeout"), Math.max(0, deadline - performance.now()));
    try {
      const first = await Promise.race([command, timer.promise]);
      if (first === "timeout") {
        command.then(
          (answer) => handlers.late?.(answer),
          () => handlers.unknown(),
        );
        const error = new TimedOut(`Redis did not answer within ${this.opts.timeoutMs} ms`);
        this.markDown(error);
        throw error;
      }
      this.markUp();
      if (this.pending.length > 0) void this.flush();
      return first;
    } catch (error) {
      if (error instanceof TimedOut) throw error;
      if (!isConnectionError(error)) {
        this.log.error(`[plugin tiers] Redis at ${this.where}: ${messageOf(error)}`);
        throw error;
      }
      this.markDown(error);
      if (isNotSent(error)) throw new NotSent(messageOf(error));
      handlers.unknown();
      throw error;
    } finally {
      clearTimeout(timeout);
    }
  }

  /** Connects unless connected, within the deadline; concurrent callers share one attempt. */
  private async connect(deadline: number): Promise<void> {
    if (this.client.connected) return;
    this.connecting ??= this.client.connect().finally(() => {
      this.connecting = null;
    });
    const wait = Math.max(0, deadline - performance.now());
    let timeout: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timeout = setTimeout(() => reject(new Error(`could not connect within ${this.opts.timeoutMs} ms`)), wait);
    });
    try {
      await Promise.race([this.connecting, timedOut]);
    } finally {
      clearTimeout(timeout);
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

  private markDown(error: unknown): void {
    if (this.down !== null) return;
    this.down = messageOf(error);
    const meanwhile = this.failOpen
      ? "failOpen is set, so calls under a tier are forwarded unchecked (error_type limits_unavailable:fail_open)"
      : "calls under a tier are refused with 503 limits_unavailable";
    // Bun's client reports a refused AUTH as "Connection closed" too, hence the hint.
    this.log.error(
      `[plugin tiers] Redis at ${this.where} is unreachable (${this.down}; check that it runs and the URL's credentials): ${meanwhile} until it answers again.`,
    );
  }

  private markUp(): void {
    if (this.down === null) return;
    this.down = null;
    this.log.info(`[plugin tiers] Redis at ${this.where} answers again; limits are enforced.`);
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
    return meter.kind === "gcra" ? gcraState(meter, a === "" ? null : Number(a), now) : windowState(meter, Number(a), Number(b), Number(c), now);
  });
  return { refused, states, hold: refused === null ? owner : null, now };
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));
const errorCode = (error: unknown) => (error as { code?: unknown } | null)?.code;
const isConnectionError = (error: unknown) => typeof errorCode(error) === "string" && String(errorCode(error)).startsWith("ERR_REDIS_CONNECTION");
/** The client refused to send it: it was not connected (the offline queue is off). */
const isNotSent = (error: unknown) => /offline queue is disabled|Connection has failed/i.test(messageOf(error));
