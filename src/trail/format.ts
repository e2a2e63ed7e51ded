/** Rendering records for people and spreadsheets: CSV (RFC 4180, formula-safe) and a text table. */
import { csvCell, plainNumber } from "./csv-cell.ts";
import { recordFields, type AuditRecord } from "./record.ts";

export { csvCell, plainNumber } from "./csv-cell.ts";

export function csvHeader(): string {
  return `${recordFields.join(",")}\r\n`;
}

export function csvRow(record: AuditRecord): string {
  return `${recordFields.map((field) => csvCell(record[field])).join(",")}\r\n`;
}

const tableColumns: (keyof AuditRecord)[] = [
  "timestamp",
  "agent_id",
  "user_id",
  "task_context",
  "provider",
  "model",
  "outcome",
  "status",
  "input_tokens",
  "output_tokens",
  "cost_usd",
  "duration_ms",
];

export function formatTable(records: AuditRecord[]): string {
  if (records.length === 0) return "No records match.\n";
  const cell = (value: unknown) => {
    const text = value === null || value === undefined ? "-" : typeof value === "number" ? plainNumber(value) : String(value);
    return text.length > 40 ? `${text.slice(0, 39)}…` : text;
  };
  const rows = records.map((record) => tableColumns.map((column) => cell(record[column])));
  const widths = tableColumns.map((column, i) => Math.max(column.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return `${[line(tableColumns), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n")}\n`;
}

/** Exact dollars from nano-dollars: 185118713650 → "185.11871365" (at least two decimals). */
export function formatUSD(nano: number): string {
  const whole = BigInt(nano);
  const dollars = whole / 1_000_000_000n;
  const fraction = (whole % 1_000_000_000n).toString().padStart(9, "0").replace(/0+$/, "").padEnd(2, "0");
  return `${dollars}.${fraction}`;
}
