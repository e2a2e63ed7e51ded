/**
 * `agent-attr audit report --since --until --format html|json --output FILE`: the auditor's report
 * of a period (../trail/report.ts), written as one self-contained HTML file (or its data as JSON)
 * and signed with the trail's Ed25519 key: the raw signature goes to FILE.sig, checkable with
 * `openssl pkeyutl -verify -rawin` or `agent-attr audit verify-report`. Producing a report
 * verifies the chain (a `verify` event) and records the report as a `query` event with its SHA-256.
 */
import { defineCommand } from "citty";
import { readFileSync, writeFileSync } from "node:fs";
import { verify } from "node:crypto";
import { z } from "zod";
import { renderReportHTML } from "../trail/report-html.ts";
import { gatherReport } from "../trail/report.ts";
import { parsePublicKey } from "../trail/signing.ts";
import { withCliAdmin } from "./audit-settings.ts";
import { errorMessage } from "../errors.ts";
import { cliActor, missingKeyHelp, signingKeyArg } from "./audit-trail.ts";
import { cliLog, configArg, exitCodes, IoError, logDbArg, opening, parseFlag, UsageError } from "./_shared.ts";

const isoTime = z
  .string()
  .refine((value) => !Number.isNaN(Date.parse(value)), { message: "expected an ISO 8601 date or date-time" })
  .transform((value) => new Date(value).toISOString());

/** `--until 2026-03-31` means the whole of that day. */
const untilOf = (value: string) => (/^\d{4}-\d{2}-\d{2}$/.test(value.trim()) ? `${value.trim()}T23:59:59.999Z` : value);

const report = defineCommand({
  meta: { name: "report", description: "Write a signed, self-contained report of a period for auditors (HTML, or its data as JSON)" },
  args: {
    since: { type: "string", required: true, description: "Start of the period (ISO 8601 date or time)" },
    until: { type: "string", description: "End of the period (a date means the whole day; default now)" },
    format: { type: "enum", options: ["html", "json"], default: "html", description: "html | json" },
    output: { type: "string", required: true, description: "File to write; the signature goes to FILE.sig", valueHint: "FILE" },
    "signing-key": signingKeyArg,
    "log-db": logDbArg,
    config: configArg,
  },
  async run({ args }) {
    const since = parseFlag("since", isoTime, args.since);
    const until = parseFlag("until", isoTime, args.until === undefined ? new Date().toISOString() : untilOf(args.until));
    if (since > until) throw new UsageError(`--since ${since} is after --until ${until}.`);
    const output = args.output;
    await withCliAdmin({ logDb: args["log-db"], signingKey: args["signing-key"], config: args.config }, async (admin, settings) => {
      if (!admin.signs) throw new IoError(`reports are signed: ${missingKeyHelp(settings)}`);
      const data = await gatherReport(admin, { since, until }, cliActor());
      const text = args.format === "html" ? renderReportHTML(data) : `${JSON.stringify(data, null, 2)}\n`;
      const bytes = new TextEncoder().encode(text);
      const signature = admin.sign(bytes);
      opening(`--output ${output}`, () => {
        writeFileSync(output, bytes, { mode: 0o644 });
        writeFileSync(`${output}.sig`, signature, { mode: 0o644 });
      });
      const sha256 = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
      try {
        const details = { route: "cli:audit report", filters: ["since", "until"], returned: data.totals.calls, sha256 };
        await admin.trail.recordEvent({ kind: "query", actor: cliActor(), details });
      } catch (error) {
        cliLog().warn(`this report is not recorded in the trail (${errorMessage(error)})`);
      }
      process.stderr.write(
        `Wrote ${output} (${args.format}, ${data.totals.calls} calls, SHA-256 ${sha256}) and its signature ${output}.sig. ` +
          `Check it: agent-attr audit verify-report ${output} --public-key trail.pub.pem (the key from 'agent-attr audit pubkey').\n`,
      );
      if (!data.verify.ok) process.exitCode = exitCodes.tampered;
    });
  },
});

const verifyReport = defineCommand({
  meta: {
    name: "verify-report",
    description: "Check a report's signature offline (exit 0 signed by --public-key, 1 changed or signed by another key)",
  },
  args: {
    file: { type: "positional", required: true, description: "The report file" },
    signature: { type: "string", description: "Its signature (default FILE.sig)", valueHint: "FILE" },
    "public-key": { type: "string", required: true, description: "The trail's public key (PEM, from 'audit pubkey')", valueHint: "FILE" },
  },
  async run({ args }) {
    const keyFile = args["public-key"];
    const key = opening(`--public-key ${keyFile}`, () => parsePublicKey(readFileSync(keyFile, "utf8")));
    const sigFile = args.signature ?? `${args.file}.sig`;
    const bytes = opening(`report ${args.file}`, () => readFileSync(args.file));
    const signature = opening(`signature ${sigFile}`, () => readFileSync(sigFile));
    const ok = signature.length === 64 && verify(null, bytes, key, signature);
    process.stdout.write(
      ok
        ? `Report ${args.file} is intact and signed by that key.\n`
        : `Report ${args.file} does NOT match its signature under that key: it was changed, or another key signed it.\n`,
    );
    process.exitCode = ok ? exitCodes.ok : exitCodes.tampered;
  },
});

export const reportCommands = { report, "verify-report": verifyReport };
