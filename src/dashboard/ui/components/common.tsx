/** Small pieces the pages share: loading and error states, range picker, tables of summary rows. */
import type { ComponentChildren } from "preact";
import { count, ranges, usd } from "../format.ts";
import type { SummaryRow } from "../types.ts";

export function Problem({ error }: { error: string | null }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null;
}

export function RangePicker({ days, onChange, id = "range" }: { days: number; onChange: (days: number) => void; id?: string }) {
  return (
    <label for={id}>
      Time range{" "}
      <select id={id} value={String(days)} onChange={(e) => onChange(Number((e.currentTarget as HTMLSelectElement).value))}>
        {ranges.map((range) => (
          <option value={String(range.days)}>{range.label}</option>
        ))}
      </select>
    </label>
  );
}

export function Card({ title, children, id }: { title: string; children: ComponentChildren; id?: string }) {
  return (
    <section class="card" aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      {children}
    </section>
  );
}

export function Stat({ label, value, testid }: { label: string; value: string; testid: string }) {
  return (
    <div class="stat">
      <div class="stat-label">{label}</div>
      <div class="stat-value" data-testid={testid}>
        {value}
      </div>
    </div>
  );
}

/** A ranked list of summary rows (top agents, users…): key, cost, calls. */
export function TopTable({ rows, caption, testid }: { rows: SummaryRow[]; caption: string; testid: string }) {
  return (
    <table data-testid={testid}>
      <caption class="sr-only">{caption}</caption>
      <thead>
        <tr>
          <th scope="col">{caption}</th>
          <th scope="col" class="num">
            Cost
          </th>
          <th scope="col" class="num">
            Calls
          </th>
        </tr>
      </thead>
      <tbody>
        {rows.length === 0 && (
          <tr>
            <td colSpan={3} class="empty">
              No calls in this range.
            </td>
          </tr>
        )}
        {rows.map((row) => (
          <tr>
            <td class="key">{row.key ?? <em>(none)</em>}</td>
            <td class="num" data-cost-nano={row.cost_nano_usd}>
              {usd(row.cost_nano_usd)}
              {row.unpriced_calls > 0 && <span class="hint"> +{count(row.unpriced_calls)} unpriced</span>}
            </td>
            <td class="num">{count(row.calls)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
