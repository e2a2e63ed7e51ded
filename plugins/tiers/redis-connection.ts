/**
 * One connection to Redis that never makes its caller wait past a deadline: scripts run by
 * EVALSHA (the source once more after a Redis restart emptied the script cache), and an outage
 * is logged once when it starts and once when it ends.
 *
 * Bun's RedisClient is used with no reconnect loop and no offline queue: a command against a dead
 * server then fails at once (with the defaults it can wait for ever, and `connect()` to a dead
 * server retries for ~30 s), and the same client connects again on the next command. Commands are
 * raced against the deadline, since a frozen server accepts bytes and never answers.
 */
import { RedisClient } from "bun";
import type { Logger } from "agent-attr";

export interface Script {
  source: string;
  sha: string;
}

export const script = (source: string): Script => ({ source, sha: new Bun.CryptoHasher("sha1").update(source).digest("hex") });

/** A command that never reached Redis: nothing was applied, so it is safe to send again. */
export class NotSent extends Error {}
/** No answer within the deadline: the server may still apply the command. */
export class TimedOut extends Error {}

export interface Outcomes {
  /** An answer that arrived after the deadline (the caller was told TimedOut). */
  late?(answer: unknown): void;
  /** A command was sent and its outcome can never be known (no answer in time and then none, or the connection dropped). */
  unknown(): void;
}

const silent: Logger = { info() {}, warn() {}, error() {} };

export class RedisConnection {
  /** The URL without credentials, for log lines. */
  readonly where: string;
  log: Logger = silent;
  private readonly client: RedisClient;
  private connecting: Promise<void> | null = null;
  /** Why Redis is unreachable, while it is. */
  private down: string | null = null;

  constructor(
    url: string,
    private readonly timeoutMs: number,
    /** What calls get meanwhile, for the outage's log line. */
    private readonly meanwhile: string,
  ) {
    this.client = new RedisClient(url, { connectionTimeout: timeoutMs, autoReconnect: false, enableOfflineQueue: false });
    const parsed = new URL(url);
    this.where = `${parsed.protocol}//${parsed.host}${parsed.pathname === "/" ? "" : parsed.pathname}`;
  }

  get connected(): boolean {
    return this.client.connected;
  }

  deadline(): number {
    return performance.now() + this.timeoutMs;
  }

  /** Connects unless connected, within the deadline; concurrent callers share one attempt. */
  async connect(deadline: number): Promise<void> {
    if (this.client.connected) return;
    this.connecting ??= this.client.connect().finally(() => {
      this.connecting = null;
    });
    let timeout: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timeout = setTimeout(
        () => reject(new Error(`could not connect within ${this.timeoutMs} ms`)),
        Math.max(0, deadline - performance.now()),
      );
    });
    try {
      await Promise.race([this.connecting, timedOut]);
      this.markUp();
    } catch (error) {
      this.markDown(error);
      throw new NotSent(messageOf(error));
    } finally {
      clearTimeout(timeout);
    }
  }

  /** Runs a script (connecting first if need be); throws NotSent, TimedOut, or what Redis said. */
  async run(script: Script, keys: string[], args: string[], deadline: number, outcomes: Outcomes): Promise<unknown> {
    await this.connect(deadline);
    const send = (command: "EVALSHA" | "EVAL", body: string) => this.client.send(command, [body, String(keys.length), ...keys, ...args]);
    const command = send("EVALSHA", script.sha).catch((error: unknown) => {
      if (messageOf(error).startsWith("NOSCRIPT")) return send("EVAL", script.source);
      throw error;
    });
    const timer = Promise.withResolvers<typeof timedOut>();
    const timeout = setTimeout(() => timer.resolve(timedOut), Math.max(0, deadline - performance.now()));
    try {
      const answer = await Promise.race([command, timer.promise]);
      if (answer === timedOut) {
        command.then(
          (late) => outcomes.late?.(late),
          () => outcomes.unknown(),
        );
        throw new TimedOut(`Redis did not answer within ${this.timeoutMs} ms`);
      }
      this.markUp();
      return answer;
    } catch (error) {
      if (error instanceof TimedOut) {
        this.markDown(error);
        throw error;
      }
      if (!isConnectionError(error)) {
        this.log.error(`[plugin tiers] Redis at ${this.where}: ${messageOf(error)}`);
        // Refused before the script ran (out of memory, a read-only replica after a failover,
        // loading, busy): nothing was applied, so it may be sent again.
        if (notRun.test(messageOf(error))) throw new NotSent(messageOf(error));
        throw error;
      }
      this.markDown(error);
      if (isNotSent(error)) throw new NotSent(messageOf(error));
      outcomes.unknown();
      throw error;
    } finally {
      clearTimeout(timeout);
    }
  }

  close(): void {
    this.client.close();
  }

  private markDown(error: unknown): void {
    if (this.down !== null) return;
    this.down = messageOf(error);
    // Bun's client reports a refused AUTH as "Connection closed" too, hence the hint.
    this.log.error(
      `[plugin tiers] Redis at ${this.where} is unreachable (${this.down}; check that it runs and the URL's credentials): ${this.meanwhile} until it answers again.`,
    );
  }

  private markUp(): void {
    if (this.down === null) return;
    this.down = null;
    this.log.info(`[plugin tiers] Redis at ${this.where} answers again; limits are enforced.`);
  }
}

const timedOut = Symbol("timed out");

export const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));
const errorCode = (error: unknown) => (error as { code?: unknown } | null)?.code;
const isConnectionError = (error: unknown) => String(errorCode(error) ?? "").startsWith("ERR_REDIS_CONNECTION");
/**
 * Error replies of a script Redis did not run, or stopped at its first write: a script without
 * flags is checked for OOM at its first write command, which then fails before anything is written
 * (checked on Redis 7.0: one whose first write is an HDEL runs whole under `maxmemory 1`).
 */
const notRun = /^(OOM|READONLY|LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN)\b/;
/** The client refused to send it: it was not connected (the offline queue is off). */
const isNotSent = (error: unknown) => /offline queue is disabled|Connection has failed/i.test(messageOf(error));
