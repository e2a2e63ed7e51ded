/**
 * Redis for tests: the shared local server (127.0.0.1:6379, which CI starts when it is down), a
 * key prefix unique to each test so runs never see each other's keys, and a private
 * redis-server on a free port for tests that stop and restart it (never the shared one).
 */
import { RedisClient, type Subprocess } from "bun";

export const sharedRedisURL = "redis://127.0.0.1:6379";

/** A prefix no other test run uses. */
export function uniquePrefix(name: string): string {
  return `agent-attr-test:${name}:${Bun.randomUUIDv7()}:`;
}

/** Every key under `prefix`, with its value type and TTL (ms), from the shared server. */
export async function keysUnder(prefix: string, url = sharedRedisURL): Promise<{ key: string; type: string; ttl: number }[]> {
  const client = new RedisClient(url);
  try {
    const keys: string[] = [];
    let cursor = "0";
    do {
      const [next, batch] = (await client.send("SCAN", [cursor, "MATCH", `${prefix}*`, "COUNT", "1000"])) as [string, string[]];
      keys.push(...batch);
      cursor = next;
    } while (cursor !== "0");
    return await Promise.all(
      keys.map(async (key) => ({ key, type: String(await client.send("TYPE", [key])), ttl: Number(await client.send("PTTL", [key])) })),
    );
  } finally {
    client.close();
  }
}

/** Deletes every key under `prefix` (tests clean up after themselves; TTLs would, later). */
export async function dropPrefix(prefix: string, url = sharedRedisURL): Promise<void> {
  const keys = await keysUnder(prefix, url);
  if (keys.length === 0) return;
  const client = new RedisClient(url);
  try {
    await client.send(
      "DEL",
      keys.map((k) => k.key),
    );
  } finally {
    client.close();
  }
}

/** A free TCP port on 127.0.0.1 (taken by the OS, released for the caller to bind). */
function freePort(): number {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

export interface PrivateRedis {
  url: string;
  /** Kills the server (SIGKILL: an outage, not a clean stop). */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty. */
  start(): Promise<void>;
  /** Freezes (SIGSTOP) or thaws (SIGCONT) it: a server that accepts bytes and never answers. */
  freeze(): void;
  thaw(): void;
}

/** A redis-server of this test's own on a free port, without persistence. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = freePort();
  const url = `redis://127.0.0.1:${port}`;
  let child: Subprocess | null = null;
  const start = async () => {
    child = Bun.spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
      stdout: "ignore",
      stderr: "ignore",
    });
    const deadline = Date.now() + 5000;
    for (;;) {
      const probe = new RedisClient(url, { autoReconnect: false, connectionTimeout: 200 });
      try {
        await probe.connect();
        if ((await probe.send("PING", [])) === "PONG") return;
      } catch {
        if (Date.now() > deadline) throw new Error(`redis-server did not start on port ${port}`);
        await Bun.sleep(20);
      } finally {
        probe.close();
      }
    }
  };
  await start();
  return {
    url,
    start,
    async kill() {
      child?.kill("SIGKILL");
      await child?.exited;
      child = null;
    },
    freeze: () => child?.kill("SIGSTOP"),
    thaw: () => child?.kill("SIGCONT"),
  };
}
