/**
 * A PostgreSQL 15 of the bench's own (initdb into a temporary folder, a free port), with the
 * durability settings a deployment runs (`fsync` and `synchronous_commit` on, the defaults), so the
 * bench sees its own server CPU: every process of this cluster serves the bench. The server's CPU
 * is the postmaster's, its live children's and what its exited children left (cutime/cstime).
 */
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const bin = process.env.AGENT_ATTR_PG_BIN ?? "/usr/lib/postgresql/15/bin";
/** initdb refuses to run as root: the server binaries run as the `postgres` user then. */
const asServerUser = (cmd: string[]) => (process.getuid?.() === 0 ? ["runuser", "-u", "postgres", "--", ...cmd] : cmd);

export interface BenchPostgres {
  url: string;
  /** CPU time (user + system, ms) of every process of this cluster so far. */
  cpuMs(): number;
  remove(): void;
}

/** utime, stime, cutime, cstime (ticks) and the parent pid of a process. */
function stat(pid: number): { own: number; children: number; ppid: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { own: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]), ppid: Number(f[1]) };
  } catch {
    return null;
  }
}

export function startBenchPostgres(): BenchPostgres {
  const dir = mkdtempSync(join(tmpdir(), "agent-attr-bench-pg-"));
  chmodSync(dir, 0o777);
  const data = join(dir, "data");
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const run = (cmd: string[]) => {
    const done = Bun.spawnSync(asServerUser(cmd), { stdout: "ignore", stderr: "pipe" });
    if (done.exitCode !== 0) throw new Error(`${cmd[0]} failed: ${done.stderr.toString()}`);
  };
  run([`${bin}/initdb`, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c max_connections=60 -c max_wal_size=4GB`;
  run([`${bin}/pg_ctl`, "-D", data, "-o", options, "-l", join(dir, "log"), "-w", "start"]);
  const postmaster = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n", 1)[0]);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    cpuMs() {
      const main = stat(postmaster);
      let ticks = main ? main.own + main.children : 0;
      for (const entry of readdirSync("/proc")) {
        const pid = Number(entry);
        if (!Number.isInteger(pid) || pid === postmaster) continue;
        const child = stat(pid);
        if (child?.ppid === postmaster) ticks += child.own;
      }
      return ticks * 10; // USER_HZ is 100 on Linux
    },
    remove() {
      Bun.spawnSync(asServerUser([`${bin}/pg_ctl`, "-D", data, "-m", "immediate", "-w", "stop"]), { stdout: "ignore", stderr: "ignore" });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
