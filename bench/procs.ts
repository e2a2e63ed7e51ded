/**
 * Child processes of the bench: start a server and wait for the stdout line that gives its URL,
 * keep its output (head and tail) for the report, and kill every child at the end, even on error.
 * Also reads a process's CPU time and peak RSS from /proc (Linux; null elsewhere).
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import type { Subprocess } from "bun";

type Child = Subprocess<"ignore", "pipe", "pipe">;

/** Keeps the first and the last `limit` characters of a growing text. */
export class OutputLog {
  private head = "";
  private tail = "";
  private dropped = false;
  constructor(private readonly limit = 16_384) {}
  append(text: string): void {
    if (this.head.length < this.limit) {
      const room = this.limit - this.head.length;
      this.head += text.slice(0, room);
      text = text.slice(room);
    }
    if (!text) return;
    this.tail += text;
    if (this.tail.length > this.limit) {
      this.tail = this.tail.slice(-this.limit);
      this.dropped = true;
    }
  }
  toString(): string {
    return this.dropped ? `${this.head}\n[... output cut ...]\n${this.tail}` : this.head + this.tail;
  }
}

export interface Server {
  name: string;
  url: string;
  proc: Child;
  stdout: OutputLog;
  stderr: OutputLog;
}

const children = new Set<Child>();

async function drain(stream: ReadableStream<Uint8Array>, log: OutputLog, onText?: (text: string) => void) {
  const decoder = new TextDecoder();
  for await (const bytes of stream) {
    const text = decoder.decode(bytes, { stream: true });
    log.append(text);
    onText?.(text);
  }
}

/**
 * Spawns `cmd` and resolves once a stdout line yields a URL through `urlOf`. Rejects (after killing
 * the child) if it exits first or `timeoutMs` passes.
 */
export async function startServer(
  name: string,
  cmd: string[],
  options: { cwd?: string; env?: Record<string, string | undefined>; urlOf: (line: string) => string | null; timeoutMs?: number },
): Promise<Server> {
  const proc: Child = Bun.spawn(cmd, { cwd: options.cwd, env: options.env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  children.add(proc);
  const stdout = new OutputLog();
  const stderr = new OutputLog();
  const { promise: ready, resolve, reject } = Promise.withResolvers<string>();
  let pending = "";
  void drain(proc.stdout, stdout, (text) => {
    pending += text;
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) {
      const url = options.urlOf(line.trim());
      if (url) resolve(url);
    }
  }).catch(() => {});
  void drain(proc.stderr, stderr).catch(() => {});
  void proc.exited.then((code) => reject(new Error(`${name} exited with code ${code} before it was ready:\n${stderr}`)));
  const timeout = setTimeout(
    () => reject(new Error(`${name} did not print its URL within ${options.timeoutMs ?? 15_000} ms:\n${stderr}`)),
    options.timeoutMs ?? 15_000,
  );
  try {
    return { name, url: await ready, proc, stdout, stderr };
  } catch (error) {
    kill(proc);
    throw error;
  } finally {
    clearTimeout(timeout);
  }
}

/** Runs a short-lived child to completion; returns its stdout (throws on a non-zero exit). */
export async function runChild(cmd: string[], timeoutMs: number): Promise<string> {
  const proc: Child = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  children.add(proc);
  const timer = setTimeout(() => kill(proc), timeoutMs);
  try {
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) throw new Error(`${cmd.join(" ").slice(0, 120)} exited with code ${code}:\n${err}`);
    return out;
  } finally {
    clearTimeout(timer);
    children.delete(proc);
  }
}

/** Sends SIGTERM and waits up to `ms` for the exit; SIGKILL after that. Returns the exit code. */
export async function stopGracefully(server: Server, ms: number): Promise<number | null> {
  server.proc.kill("SIGTERM");
  let timer: Timer | undefined;
  const code = await Promise.race([server.proc.exited, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)))]);
  clearTimeout(timer); // a pending timer would keep the bench alive
  if (code === null) {
    kill(server.proc);
    return null;
  }
  children.delete(server.proc);
  return code;
}

function kill(proc: Child): void {
  children.delete(proc);
  if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
}

/** Kills every child still running (synchronous, so it also works from an exit handler). */
export function killAll(): void {
  for (const proc of [...children]) kill(proc);
}

/** User + system CPU time of a process (all threads) in ms, from /proc/<pid>/stat. */
export function cpuMs(pid: number): number | null {
  return statCpuMs(`/proc/${pid}/stat`);
}

/** What a Bun process's threads do, by their names in /proc (`comm`). */
export const threadKinds = ["main", "http", "workers", "runtime"] as const;
export type ThreadKind = (typeof threadKinds)[number];

/**
 * A process's CPU ms by kind of thread: `main` (its thread id is the pid: in a proxy, the request
 * thread), `http` (Bun's "HTTP Client" thread, which runs every fetch), `workers` (Worker threads:
 * agent-attr's audit writer and reader), `runtime` (the rest: JIT, GC, thread pools).
 */
export function threadCpuMs(pid: number): Record<ThreadKind, number> | null {
  const out: Record<ThreadKind, number> = { main: 0, http: 0, workers: 0, runtime: 0 };
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  for (const tid of tids) {
    const ms = statCpuMs(`/proc/${pid}/task/${tid}/stat`);
    if (ms === null) continue; // the thread ended meanwhile
    let name = "";
    try {
      name = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
    } catch {}
    out[tid === String(pid) ? "main" : name === "HTTP Client" ? "http" : name === "Worker" ? "workers" : "runtime"] += ms;
  }
  return out;
}

function statCpuMs(path: string): number | null {
  try {
    const stat = readFileSync(path, "utf8");
    // Fields after the command name (which may contain spaces) start with field 3, the state.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]); // utime (14) + stime (15)
    return Number.isFinite(ticks) ? ticks * 10 : null; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

/** Busy and total CPU time of the whole machine (all cores) in ticks, from /proc/stat. */
export function machineTicks(): { busy: number; total: number } | null {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
    const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number); // user nice system idle iowait irq softirq steal
    const total = ticks.reduce((a, b) => a + b, 0);
    const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
    return Number.isFinite(total) && total > 0 ? { busy: total - idle, total } : null;
  } catch {
    return null;
  }
}

/** Peak resident set size (VmHWM) of a process in MiB, from /proc/<pid>/status. */
export function peakRssMiB(pid: number): number | null {
  try {
    const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match?.[1] ? Number(match[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Resets a process's peak RSS (VmHWM) to its current RSS (Linux: `5` into /proc/<pid>/clear_refs),
 * so the next peakRssMiB reads the peak of what ran since. False where that is not possible.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}
