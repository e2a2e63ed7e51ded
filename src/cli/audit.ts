/** `agent-attr audit ...`: read the audit trail from the command line. */
import { defineCommand } from "citty";
import { csvHeader, csvRow, formatTable } from "../trail/format.ts";
import { recordFilterSchema } from "../store/filters.ts";
import { exportCommands } from "./audit-export.ts";
import { withCliAdmin } from "./audit-settings.ts";
import { recordCliQuery, trailCommands } from "./audit-trail.ts";
import { filterNames } from "../store/filters.ts";
import { configArg, logDbArg, parseOptions } from "./_shared.ts";
import { summaryCommand } from "./audit-summary.ts";
import { filterArgs, filterValues } from "./filter-args.ts";
import { reportCommands } from "./audit-report.ts";

const query = defineCommand({
  meta: { name: "query", description: "List audit records, newest first" },
  args: {
    ...filterArgs,
    limit: { type: "string", description: "Records per page (default 100, max 1000)" },
    cursor: { type: "string", description: "next_cursor of a previous page" },
    format: { type: "enum", options: ["table", "json", "csv"], default: "table", description: "Output format" },
    "log-db": logDbArg,
    config: configArg,
  },
  async run({ args, rawArgs }) {
    const filter = parseOptions(recordFilterSchema, { ...filterValues(args, rawArgs), limit: args.limit, cursor: args.cursor });
    await withCliAdmin({ logDb: args["log-db"], config: args.config }, async (admin) => {
      const page = await admin.reader.records(filter);
      await recordCliQuery(admin, "cli:audit query", filterNames(filter, ["limit"]), page.records.length);
      if (args.format === "json") process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
      else if (args.format === "csv") process.stdout.write(csvHeader() + page.records.map(csvRow).join(""));
      else {
        process.stdout.write(formatTable(page.records));
        if (page.next_cursor) process.stdout.write(`(more: --cursor ${page.next_cursor})\n`);
      }
    });
  },
});

export const auditCommand = defineCommand({
  meta: { name: "audit", description: "Query, summarise, verify, export and erase the audit trail" },
  subCommands: { query, summary: summaryCommand, ...trailCommands, ...exportCommands, ...reportCommands },
});
