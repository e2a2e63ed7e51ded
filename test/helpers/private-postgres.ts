/**
 * A PostgreSQL server of a test's own (initdb into a temporary folder, a free port), so a test can
 * stop and restart it without touching the shared server at 127.0.0.1:5432.
 */
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const bin = "/usr/lib/postgresql/15/bin";
/** initdb refuses to run as root: run the server binaries as the `postgres` user then. */
const asServerUser = (cmd: string[]) => (process.getuid?.() === 0 ? ["runuser", "-u", "postgres", "--", ...cmd] : cmd);

export interface PrivatePostgres {
  url: string;
  port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
  remove(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = mkdtempSync(join(tmpdir(), "agent-attr-pg-"));
  chmodSync(dir, 0o777);
  const data = join(dir, "data");
  const port = await freePort();
  const init = Bun.spawnSync(asServerUser([`${bin}/initdb`, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]), {
    stdout: "ignore",
    stderr: "pipe",
  });
  if (init.exitCode !== 0) throw new Error(`initdb failed: ${init.stderr.toString()}`);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c shared_buffers=16MB -c max_connections=40 -c fsync=off`;
  const ctl = (...args: string[]) =>
    Bun.spawnSync(asServerUser([`${bin}/pg_ctl`, "-D", data, ...args]), { stdout: "ignore", stderr: "pipe" });
  const pg: PrivatePostgres = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async start() {
      const started = ctl("-o", options, "-l", join(dir, "log"), "-w", "start");
      if (started.exitCode !== 0) throw new Error(`pg_ctl start failed: ${started.stderr.toString()}`);
    },
    async stop() {
      ctl("-m", "fast", "-w", "stop");
    },
    async remove() {
      ctl("-m", "immediate", "-w", "stop");
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await pg.start();
  return pg;
}
