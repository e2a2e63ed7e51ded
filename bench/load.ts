/**
 * The load generator, run as its own process: `bun bench/load.ts '<LoadConfig as JSON>'`.
 * Prints one line of JSON (a LoadResult) on stdout.
 *
 * - Closed loop (no `rate`): `connections` fetch loops on keep-alive connections, each sending the
 *   next request as soon as the previous response body was read in full. Gives max throughput.
 * - Open loop (`rate`): requests start on a fixed schedule, at most `connections` in flight;
 *   latency counts from the scheduled start, so a stalled server cannot hide its queueing.
 *
 * Latency is the time to the last byte of the body. Requests that start during the warmup are
 * answered but not measured. When the time is up no new request starts and those in flight finish
 * (so every request a server got has been answered when this process exits).
 */
import { cpuMs, machineTicks, threadCpuMs, threadKinds } from "./procs.ts";

export interface LoadConfig {
  url: string;
  headers: Record<string, string>;
  body: string;
  connections: number;
  warmupSeconds: number;
  seconds: number;
  /** Requests per second for an open loop; absent for a closed loop. */
  rate?: number;
  /**
   * Headers whose value differs per request: name → number of distinct values. Each request sends
   * `<value in headers>-<k>` with k drawn at random below that number (many users, agents, tasks).
   */
  vary?: Record<string, number>;
  /** Processes whose CPU time is sampled over the measured window, by label. */
  watch?: Record<string, number>;
}

export interface LoadResult {
  /** Requests started in the measured window and answered. */
  measured: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
  max: number;
  /** Every response received, warmup included (2xx or not). */
  responses: number;
  non2xx: number;
  /** Transport failures (no response). */
  errors: number;
  /** 2xx responses whose body length differs from the first one (a truncated stream, say). */
  bodyMismatch: number;
  /** Open loop: requests the schedule called for that never started (the server fell behind). */
  missed: number;
  statuses: Record<string, number>;
  samples: string[];
  /** CPU ms over the measured window: the watched processes, and `load` (this process); `<label>:<thread kind>` its threads by kind (procs.ts). */
  cpuMs: Record<string, number | null>;
  /** Share of the machine's CPU (all cores) that was busy during the measured window, in %. */
  machineBusy: number | null;
}

const endGraceMs = 15_000;

export async function runLoad(config: LoadConfig): Promise<LoadResult> {
  const t0 = performance.now();
  const measureStart = t0 + config.warmupSeconds * 1000;
  const end = measureStart + config.seconds * 1000;
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  const samples: string[] = [];
  const abort = new AbortController();
  const init = { method: "POST", headers: config.headers, body: config.body, signal: abort.signal };
  const varied = Object.entries(config.vary ?? {});
  const requestInit = () => {
    if (varied.length === 0) return init;
    const headers = { ...config.headers };
    for (const [name, count] of varied) headers[name] = `${config.headers[name] ?? name}-${Math.floor(Math.random() * count)}`;
    return { ...init, headers };
  };
  let responses = 0;
  let non2xx = 0;
  let errors = 0;
  let bodyMismatch = 0;
  let expectedLength = -1;
  const sample = (text: string) => {
    if (samples.length < 5 && !samples.includes(text)) samples.push(text.slice(0, 300));
  };

  /** One request; `start` is when it began (or was scheduled to). */
  async function one(start: number): Promise<void> {
    try {
      const response = await fetch(config.url, requestInit());
      const body = await response.arrayBuffer();
      const done = performance.now();
      responses++;
      statuses[response.status] = (statuses[response.status] ?? 0) + 1;
      if (response.status < 200 || response.status > 299) {
        non2xx++;
        sample(`HTTP ${response.status}: ${new TextDecoder().decode(body)}`);
      } else if (expectedLength < 0) {
        expectedLength = body.byteLength;
      } else if (body.byteLength !== expectedLength) {
        bodyMismatch++;
        sample(`body of ${body.byteLength} bytes, expected ${expectedLength}`);
      }
      if (start >= measureStart) latencies.push(done - start);
    } catch (error) {
      errors++;
      sample(`fetch failed: ${error instanceof Error ? error.message : String(error)}`);
      await Bun.sleep(10); // a refused connection must not spin the loop
    }
  }

  const inflight = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  };
  const watch = { ...config.watch, load: process.pid };
  const sampleCpu = () => ({
    machine: machineTicks(),
    // Each process, and its threads by kind (`<label>:main`, `:http`, `:workers`, `:runtime`).
    pids: Object.fromEntries(
      Object.entries(watch).flatMap(([label, pid]) => {
        const threads = threadCpuMs(pid);
        return [[label, cpuMs(pid)], ...threadKinds.map((kind): [string, number | null] => [`${label}:${kind}`, threads?.[kind] ?? null])];
      }),
    ),
  });
  const cpuWindow: { start?: ReturnType<typeof sampleCpu>; end?: ReturnType<typeof sampleCpu> } = {};
  const cpuTimer = setTimeout(() => (cpuWindow.start = sampleCpu()), Math.max(0, measureStart - performance.now()));
  const endTimer = setTimeout(() => (cpuWindow.end = sampleCpu()), Math.max(0, end - performance.now()));

  let missed = 0;
  if (config.rate === undefined) {
    const loop = async () => {
      while (performance.now() < end) await one(performance.now());
    };
    for (let i = 0; i < config.connections; i++) track(loop());
  } else {
    const interval = 1000 / config.rate;
    let issued = 0;
    for (let now = performance.now(); now < end; now = performance.now()) {
      const due = Math.floor((now - t0) / interval) + 1;
      while (issued < due && inflight.size < config.connections) track(one(t0 + issued++ * interval));
      await Bun.sleep(1);
    }
    // Requests due before the end (the last tick's) still start, unless the server fell behind.
    const dueAtEnd = Math.ceil((end - t0) / interval);
    while (issued < dueAtEnd && inflight.size < config.connections) track(one(t0 + issued++ * interval));
    missed = dueAtEnd - issued;
  }
  let graceTimer: Timer | undefined;
  const finished = await Promise.race([
    Promise.all(inflight).then(() => true),
    new Promise<false>((resolve) => (graceTimer = setTimeout(() => resolve(false), endGraceMs))),
  ]);
  clearTimeout(graceTimer); // a pending timer would keep this process alive
  if (!finished) {
    sample(`${inflight.size} request(s) still unanswered ${endGraceMs} ms after the end; aborted`);
    abort.abort();
    await Promise.all(inflight);
  }
  clearTimeout(cpuTimer);
  clearTimeout(endTimer);
  cpuWindow.end ??= sampleCpu(); // the last requests can finish before the end timer fires

  const sorted = Float64Array.from(latencies).sort();
  const pct = (p: number) => (sorted.length ? (sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0) : 0);
  const cpu: Record<string, number | null> = {};
  let machineBusy: number | null = null;
  const { start: before, end: after } = cpuWindow;
  if (before && after) {
    for (const [label, start] of Object.entries(before.pids)) {
      const stop = after.pids[label];
      cpu[label] = typeof start === "number" && typeof stop === "number" ? stop - start : null;
    }
    if (before.machine && after.machine && after.machine.total > before.machine.total) {
      machineBusy = (100 * (after.machine.busy - before.machine.busy)) / (after.machine.total - before.machine.total);
    }
  }
  return {
    measured: sorted.length,
    seconds: config.seconds,
    rps: sorted.length / config.seconds,
    p50: pct(50),
    p99: pct(99),
    max: sorted.at(-1) ?? 0,
    responses,
    non2xx,
    errors,
    bodyMismatch,
    missed,
    statuses,
    samples,
    cpuMs: cpu,
    machineBusy,
  };
}

if (import.meta.main) {
  const arg = process.argv[2];
  if (!arg) throw new Error("usage: bun bench/load.ts '<LoadConfig JSON>'");
  const result = await runLoad(JSON.parse(arg) as LoadConfig);
  console.log(JSON.stringify(result));
}
