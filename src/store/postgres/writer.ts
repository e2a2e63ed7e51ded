/**
 * Running a transaction on a reserved connection under a deadline of our own. Bun.sql bounds
 * connecting but not a query on an established connection: after a network partition it would
 * wait forever (holding the chain lock's session until the server's keepalive notices). On expiry
 * the connection is closed at once (`close({ timeout: 0 })` rejects what is pending on it) and the
 * transaction counts as failed; the server rolls it back when it sees the socket go (or after
 * `idle_in_transaction_session_timeout`).
 */
import type { SQL } from "bun";

export class DeadlineError extends Error {
  constructor(ms: number) {
    super(`PostgreSQL did not answer within ${ms} ms`);
  }
}

export async function transaction<T>(sql: SQL, ms: number, fn: (tx: SQL) => Promise<T>): Promise<T> {
  let timer: Timer | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(ms)), ms);
  });
  let reserved: (SQL & { release(): void; close(o?: { timeout?: number }): Promise<void> }) | undefined;
  const work = (async () => {
    reserved = (await sql.reserve()) as typeof reserved;
    await reserved!.unsafe("BEGIN");
    try {
      const result = await fn(reserved!);
      await reserved!.unsafe("COMMIT");
      return result;
    } catch (error) {
      await reserved!.unsafe("ROLLBACK").catch(() => undefined);
      throw error;
    }
  })();
  try {
    const result = await Promise.race([work, deadline]);
    reserved?.release();
    return result;
  } catch (error) {
    // A connection in an unknown state is not given back to the pool.
    void reserved?.close({ timeout: 0 }).catch(() => undefined);
    work.catch(() => undefined);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
