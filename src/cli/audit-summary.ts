/** `agent-attr audit summary --by agent --days 30`: calls, tokens and cost per group. */
import { defineCommand } from "citty";
import { csvCell, formatUSD } from "../trail/format.ts";
import { summaryTokenFields, type Summary, type SummaryRow } from "../store/results.ts";
import { summaryFilterSchema, summaryGroupings } from "../store/filters.ts";
import { filterNames } from "../store/filters.ts";
import { configArg, logDbArg, parseOptions } from "./_shared.ts";
import { withCliAdmin } from "./audit-settings.ts";
import { recordCliQuery } from "./audit-trail.ts";
import { filterArgs, filterValues } from "./filter-args.ts";

/** The summed token columns, then the cost in dollars (its exact nano-dollars go to CSV only). */
const tokenColumns = summaryTokenFields;
const columns = ["calls", ...tokenColumns, "cost_usd", "unpriced_calls"] as const satisfies (keyof SummaryRow)[];

function cells(row: SummaryRow): string[] {
  return columns.map((column) => (column === "cost_usd" ? formatUSD(row.cost_nano_usd) : String(row[column])));
}

export function summaryTable(summary: Summary): string {
  if (summary.groups.length === 0) return "No records match.\n";
  const header = [summary.by, ...columns];
  const rows = [...summary.groups.map((g) => [g.key ?? "-", ...cells(g)]), ["TOTAL", ...cells(summary.total)]];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  // Text left-aligned, numbers right-aligned.
  const line = (row: string[]) =>
    row
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  const rule = widths.map((w) => "-".repeat(w));
  return `${[line(header), line(rule), ...rows.slice(0, -1).map(line), line(rule), line(rows.at(-1)!)].join("\n")}\n`;
}

export function summaryCSV(summary: Summary): string {
  const header = ["key", ...columns, "cost_nano_usd"];
  const rows = summary.groups.map((g) => [g.key, ...columns.map((c) => g[c]), g.cost_nano_usd].map(csvCell).join(","));
  return `${[header.join(","), ...rows].join("\r\n")}\r\n`;
}

export const summaryCommand = defineCommand({
  meta: { name: "summary", description: "Calls, tokens and cost per agent, user, task, model, provider, day or tag" },
  args: {
    by: { type: "string", required: true, description: `Group by: ${summaryGroupings.join("|")}, or tag:KEY (e.g. tag:team)` },
    ...filterArgs,
    format: { type: "enum", options: ["table", "json", "csv"], default: "table", description: "Output format" },
    "log-db": logDbArg,
    config: configArg,
  },
  async run({ args, rawArgs }) {
    const filter = parseOptions(summaryFilterSchema, { by: args.by, ...filterValues(args, rawArgs) });
    await withCliAdmin({ logDb: args["log-db"], config: args.config }, async (admin) => {
      const summary = await admin.reader.summary(filter);
      await recordCliQuery(admin, `cli:audit summary --by ${filter.by}`, filterNames(filter, ["by", "sort"]), summary.groups.length);
      if (args.format === "json") process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
      else if (args.format === "csv") process.stdout.write(summaryCSV(summary));
      else process.stdout.write(summaryTable(summary));
    });
  },
});
