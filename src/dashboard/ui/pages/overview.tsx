/** Overview: spend, calls and tokens over time, the top spenders, refused and failed calls, calls in flight; refreshes every 30 s while visible. */
import { useEffect, useMemo, useState } from "preact/hooks";
import { get, query } from "../api.ts";
import { Card, Problem, RangePicker, Stat, TopTable } from "../components/common.tsx";
import { TimeChart, type Series } from "../components/chart.tsx";
import { count, time, usd } from "../format.ts";
import type { Overview as OverviewData, SummaryRow } from "../types.ts";

const refreshMs = 30_000;

/** Bucket start (epoch seconds) for every hour or day of the range, so quiet periods show as zero. */
function buckets(data: OverviewData): { times: number[]; rows: (SummaryRow | undefined)[] } {
  const step = data.bucket === "hour" ? 3_600_000 : 86_400_000;
  const keyOf = (ms: number) => new Date(ms).toISOString().slice(0, data.bucket === "hour" ? 13 : 10);
  const byKey = new Map(data.series.map((row) => [row.key, row]));
  const end = Date.parse(data.until ?? new Date().toISOString());
  const first = data.series[0]?.key;
  const startKey =
    data.since ?? (first ? (data.bucket === "hour" ? `${first}:00:00Z` : `${first}T00:00:00Z`) : new Date(end).toISOString());
  const start = Math.floor(Date.parse(startKey) / step) * step;
  const times: number[] = [];
  const rows: (SummaryRow | undefined)[] = [];
  for (let at = start; at <= end && times.length < 10_000; at += step) {
    times.push(at / 1000);
    rows.push(byKey.get(keyOf(at)));
  }
  return { times, rows };
}

const refusedLabels: Record<string, string> = {
  "401": "401 no or bad credential",
  "403": "403 identity not allowed",
  "402": "402 budget exhausted",
  "429": "429 rate limited",
};

export function Overview() {
  const [days, setDays] = useState(7);
  const [data, setData] = useState<OverviewData | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let stopped = false;
    const load = () => {
      if (document.visibilityState === "hidden") return;
      get<OverviewData>(`/audit/overview${query({ days, top: 5 })}`).then(
        (answer) => !stopped && (setData(answer), setError(null)),
        (caught: Error) => !stopped && setError(caught.message),
      );
    };
    setData(null);
    load();
    const timer = setInterval(load, refreshMs);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [days]);
  const chart = useMemo(() => {
    if (!data) return null;
    const { times, rows } = buckets(data);
    const series: Series[] = [
      {
        label: "Spend",
        values: rows.map((r) => (r?.cost_nano_usd ?? 0) / 1e9),
        color: "#1f5fa8",
        format: (v) => `$${v.toFixed(v < 1 ? 4 : 2)}`,
      },
      { label: "Calls", values: rows.map((r) => r?.calls ?? 0), color: "#b35900", format: (v) => count(Math.round(v)) },
      {
        label: "Tokens",
        values: rows.map((r) => (r ? r.input_tokens + r.output_tokens : 0)),
        color: "#2e7d32",
        format: (v) => count(Math.round(v)),
      },
    ];
    return { times, series };
  }, [data]);
  const refused = data?.statuses.filter((row) => row.key?.startsWith("rejected:")) ?? [];
  const upstream = data?.statuses.filter((row) => row.key?.startsWith("upstream_error:")) ?? [];
  const sum = (rows: SummaryRow[]) => rows.reduce((total, row) => total + row.calls, 0);
  return (
    <main class="page" data-ready={data ? "true" : "false"} aria-busy={!data}>
      <div class="toolbar">
        <h1>Overview</h1>
        <RangePicker days={days} onChange={setDays} />
        {data && <span class="hint">Refreshes every 30 s · {data.bucket === "hour" ? "per hour" : "per day"} (UTC)</span>}
      </div>
      <Problem error={error} />
      {data && chart && (
        <>
          <div class="stats">
            <Stat label="Spend" value={usd(data.total.cost_nano_usd)} testid="total-cost" />
            <Stat label="Calls" value={count(data.total.calls)} testid="total-calls" />
            <Stat label="Input tokens" value={count(data.total.input_tokens)} testid="total-input" />
            <Stat label="Output tokens" value={count(data.total.output_tokens)} testid="total-output" />
            <Stat label="Unpriced calls" value={count(data.total.unpriced_calls)} testid="total-unpriced" />
            <Stat label="Refused calls" value={count(sum(refused))} testid="total-refused" />
            <Stat label="Upstream errors" value={count(sum(upstream))} testid="total-upstream-errors" />
            <Stat label="In flight now" value={count(data.inflight)} testid="inflight" />
          </div>
          <Card title={`Spend, calls and tokens per ${data.bucket}`} id="chart-title">
            <TimeChart
              times={chart.times}
              series={chart.series}
              label={`Spend, calls and tokens per ${data.bucket}; the numbers are in the tables below`}
            />
          </Card>
          <div class="grid">
            <Card title="Top agents by cost" id="top-agents">
              <TopTable rows={data.top.agent} caption="Agent" testid="top-agent" />
            </Card>
            <Card title="Top users by cost" id="top-users">
              <TopTable rows={data.top.user} caption="User" testid="top-user" />
            </Card>
            <Card title="Top tasks by cost" id="top-tasks">
              <TopTable rows={data.top.task} caption="Task" testid="top-task" />
            </Card>
            <Card title="Top models by cost" id="top-models">
              <TopTable rows={data.top.model} caption="Model" testid="top-model" />
            </Card>
            <Card title="Refused and failed calls" id="refused">
              <table data-testid="statuses">
                <thead>
                  <tr>
                    <th scope="col">Outcome</th>
                    <th scope="col" class="num">
                      Calls
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {[...refused, ...upstream].length === 0 && (
                    <tr>
                      <td colSpan={2} class="empty">
                        None in this range.
                      </td>
                    </tr>
                  )}
                  {[...refused, ...upstream].map((row) => {
                    const [outcome, status = ""] = (row.key ?? "").split(":");
                    const label = outcome === "rejected" ? `refused: ${refusedLabels[status] ?? status}` : `upstream error ${status}`;
                    return (
                      <tr>
                        <td>{label}</td>
                        <td class="num">{count(row.calls)}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </Card>
          </div>
          <p class="hint">
            From {time(data.since)} to {data.until ? time(data.until) : "now"}.
          </p>
        </>
      )}
    </main>
  );
}
