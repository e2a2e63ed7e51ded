/**
 * Writing to PostgreSQL: COPY in text format, and running statements (or a transaction) on a
 * reserved connection under a deadline of our own. Bun.sql bounds
 * connecting but not a query on an established connection: after a network partition it would
 * wait forever (holding the chain lock's session until the server's keepalive notices). On expiry
 * the connection is closed at once (`close({ timeout: 0 })` rejects what is pending on it) and the
 * transaction counts as failed; the server rolls it back when it sees the socket go (or after
 * `idle_in_transaction_session_timeout`).
 */
import type { SQL } from "bun";
import type { SQLValue } from "../../trail/row.ts";

export class DeadlineError extends Error {
  constructor(ms: number) {
    super(`PostgreSQL did not answer within ${ms} ms`);
  }
}

export function transaction<T>(sql: SQL, ms: number, fn: (tx: SQL) => Promise<T>, mode = ""): Promise<T> {
  return onConnection(sql, ms, async (connection) => {
    await connection.unsafe(mode ? `BEGIN ${mode}` : "BEGIN");
    try {
      const result = await fn(connection);
      await connection.unsafe("COMMIT");
      return result;
    } catch (error) {
      await connection.unsafe("ROLLBACK").catch(() => undefined);
      throw error;
    }
  });
}

/** `fn` on a reserved connection under the deadline, each statement its own transaction. */
export async function onConnection<T>(sql: SQL, ms: number, fn: (connection: SQL) => Promise<T>): Promise<T> {
  let timer: Timer | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(ms)), ms);
  });
  type Reserved = SQL & { release(): void; close(o?: { timeout?: number }): Promise<void> };
  let reserved: Reserved | undefined;
  let gaveUp = false;
  const work = (async () => {
    const connection = (await sql.reserve()) as Reserved;
    // The deadline passed while the pool was busy: the work is not done late (its caller has
    // reported it failed), and the connection goes rather than staying reserved for ever.
    if (gaveUp) {
      void connection.close({ timeout: 0 }).catch(() => undefined);
      throw new DeadlineError(ms);
    }
    reserved = connection;
    return fn(connection);
  })();
  try {
    const result = await Promise.race([work, deadline]);
    reserved?.release();
    return result;
  } catch (error) {
    gaveUp = true;
    // A connection in an unknown state is not given back to the pool.
    void reserved?.close({ timeout: 0 }).catch(() => undefined);
    work.catch(() => undefined);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

const copyEscapes: Record<string, string> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" };
const copyCell = (value: SQLValue): string =>
  value === null ? "\\N" : typeof value === "string" ? value.replace(/[\\\t\n\r]/g, (c) => copyEscapes[c]!) : String(value);

/** The cells of a row in COPY's text format, tab-separated (no line end). */
export const copyCells = (row: readonly SQLValue[]): string => row.map(copyCell).join("\t");

/** One line of COPY's text format. */
export const copyLine = (row: readonly SQLValue[]): string => `${copyCells(row)}\n`;

/** `COPY target FROM STDIN` (text format), fed in pieces: the server parses one while the next is made. */
export function copyStream(connection: SQL, target: string): { write(text: string): Promise<void>; end(): Promise<void> } {
  const query = connection.unsafe(`COPY ${target} FROM STDIN`);
  const writer = query.writable().getWriter();
  return {
    write: (text) => writer.write(text),
    end: async () => {
      await writer.close();
      await query;
    },
  };
}

/** `COPY target FROM STDIN` (text format) of `text`, lines made by `copyLine`. */
export async function copyText(connection: SQL, target: string, text: string): Promise<void> {
  if (!text) return;
  const copy = copyStream(connection, target);
  await copy.write(text);
  await copy.end();
}

/** `COPY target FROM STDIN` of rows (`target` names the table and its columns in the rows' order). */
export function copyRows(connection: SQL, target: string, rows: readonly (readonly SQLValue[])[]): Promise<void> {
  let text = "";
  for (const row of rows) text += copyLine(row);
  return copyText(connection, target, text);
}
