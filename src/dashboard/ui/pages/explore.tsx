/** Explore: cost, calls and tokens broken down by one dimension (or a tag's values), with the record filters and a time range; sortable; downloadable as CSV. */
import { useState } from "preact/hooks";
import { csvCell } from "../../../trail/csv-cell.ts";
import { query, saveFile } from "../api.ts";
import { useAnswer } from "../answer.ts";
import { Problem, RangePicker } from "../components/common.tsx";
import { FilterForm, type Filters } from "../components/filters.tsx";
import { count, usd } from "../format.ts";
import type { Summary, SummaryRow } from "../types.ts";

const dimensions = ["agent", "user", "task", "model", "provider", "key", "day", "hour", "status", "tag"] as const;
const sorts = [
  { value: "cost", label: "cost" },
  { value: "calls", label: "calls" },
  { value: "input_tokens", label: "input tokens" },
  { value: "output_tokens", label: "output tokens" },
  { value: "key", label: "name" },
] as const;
const shown = 500;
const columns: (keyof SummaryRow)[] = [
  "key",
  "calls",
  "input_tokens",
  "output_tokens",
  "cache_read_tokens",
  "cache_write_tokens",
  "reasoning_tokens",
  "cost_usd",
  "unpriced_calls",
  "cost_nano_usd",
];

function toCSV(summary: Summary): string {
  const lines = [columns.join(",")];
  for (const row of [...summary.groups, summary.total])
    lines.push(columns.map((c) => csvCell(row === summary.total && c === "key" ? "TOTAL" : row[c])).join(","));
  return `${lines.join("\r\n")}\r\n`;
}

export function Explore() {
  const [dimension, setBy] = useState<(typeof dimensions)[number]>("agent");
  // "tag" breaks down by the values of one tag key (by=tag:KEY); applied when the key is entered.
  const [tagKey, setTagKey] = useState("team");
  const by = dimension === "tag" ? `tag:${tagKey}` : dimension;
  const [sort, setSort] = useState<string>("cost");
  const [days, setDays] = useState(7);
  const [filters, setFilters] = useState<Filters>({});
  const { data, error } = useAnswer<Summary>(`/audit/summary${query({ by, sort, days, limit: shown, ...filters })}`);
  const download = () =>
    data && saveFile(new Blob([toCSV(data)], { type: "text/csv" }), `agent-attr-summary-by-${by.replace(":", "-")}.csv`);
  return (
    <main class="page" data-ready={data ? "true" : "false"} aria-busy={!data}>
      <div class="toolbar">
        <h1>Explore</h1>
        <label for="explore-by">
          Break down by{" "}
          <select
            id="explore-by"
            value={dimension}
            onChange={(e) => setBy((e.currentTarget as HTMLSelectElement).value as typeof dimension)}
          >
            {dimensions.map((d) => (
              <option value={d}>{d}</option>
            ))}
          </select>
        </label>
        {dimension === "tag" && (
          <label for="explore-tag-key">
            Tag key{" "}
            <input
              id="explore-tag-key"
              value={tagKey}
              size={12}
              onChange={(e) => setTagKey((e.currentTarget as HTMLInputElement).value.trim() || "team")}
            />
          </label>
        )}
        <label for="explore-sort">
          Sort by{" "}
          <select id="explore-sort" value={sort} onChange={(e) => setSort((e.currentTarget as HTMLSelectElement).value)}>
            {sorts.map((s) => (
              <option value={s.value}>{s.label}</option>
            ))}
          </select>
        </label>
        <RangePicker days={days} onChange={setDays} id="explore-range" />
        <button type="button" onClick={download} disabled={!data}>
          Download CSV
        </button>
      </div>
      <FilterForm initial={filters} onApply={setFilters} idPrefix="explore" />
      <Problem error={error} />
      {data && (
        <>
          <p class="hint" data-testid="group-count">
            {data.group_count > data.groups.length
              ? `The first ${count(data.groups.length)} of ${count(data.group_count)} groups`
              : `${count(data.group_count)} groups`}
            {by === "day" || by === "hour" ? " (UTC, oldest first)" : ""}
          </p>
          <table data-testid="explore-table">
            <thead>
              <tr>
                <th scope="col">{by}</th>
                <th scope="col" class="num">
                  Cost
                </th>
                <th scope="col" class="num">
                  Calls
                </th>
                <th scope="col" class="num">
                  Input tokens
                </th>
                <th scope="col" class="num">
                  Output tokens
                </th>
                <th scope="col" class="num">
                  Unpriced
                </th>
              </tr>
            </thead>
            <tbody>
              {data.groups.map((row) => (
                <tr>
                  <td class="key">{row.key ?? <em>(none)</em>}</td>
                  <td class="num" data-cost-nano={row.cost_nano_usd}>
                    {usd(row.cost_nano_usd)}
                  </td>
                  <td class="num">{count(row.calls)}</td>
                  <td class="num">{count(row.input_tokens)}</td>
                  <td class="num">{count(row.output_tokens)}</td>
                  <td class="num">{count(row.unpriced_calls)}</td>
                </tr>
              ))}
            </tbody>
            <tfoot>
              <tr>
                <th scope="row">Total</th>
                <td class="num" data-testid="explore-total-cost" data-cost-nano={data.total.cost_nano_usd}>
                  {usd(data.total.cost_nano_usd)}
                </td>
                <td class="num" data-testid="explore-total-calls">
                  {count(data.total.calls)}
                </td>
                <td class="num">{count(data.total.input_tokens)}</td>
                <td class="num">{count(data.total.output_tokens)}</td>
                <td class="num">{count(data.total.unpriced_calls)}</td>
              </tr>
            </tfoot>
          </table>
        </>
      )}
    </main>
  );
}
