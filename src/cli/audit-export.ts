/** `agent-attr audit export` and `audit verify-export`: signed exports that stand on their own. */
import { defineCommand } from "citty";
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { exportFilterSchema, exportFormats, verifyExport } from "../trail/export.ts";
import type { AuditExport } from "../store/contract.ts";
import { withCliAdmin } from "./audit-settings.ts";
import { cliActor, missingKeyHelp, signingKeyArg } from "./audit-trail.ts";
import { configArg, exitCodes, InterruptedError, IoError, logDbArg, opening, UsageError } from "./_shared.ts";
import { errorMessage } from "../errors.ts";
import { ExportRefusedError } from "../trail/export-check.ts";
import { flagValues } from "./filter-args.ts";

const exportCommand = defineCommand({
  meta: { name: "export", description: "Export records (streamed) with a signed manifest beside the file" },
  args: {
    format: { type: "enum", options: [...exportFormats], required: true, description: "csv | json | ndjson" },
    output: {
      type: "string",
      description: "File to write (its manifest goes to FILE.manifest.json); default stdout, without manifest",
      valueHint: "FILE",
    },
    "start-date": { type: "string", description: "From this day (YYYY-MM-DD, UTC) or ISO 8601 time" },
    "end-date": { type: "string", description: "Up to and including this day, or up to this ISO 8601 time" },
    agent: { type: "string", description: "Only this agent" },
    user: { type: "string", description: "Only this user" },
    task: { type: "string", description: "Only this task context" },
    tag: { type: "string", description: "Only records with this tag, KEY=VALUE (repeat for several: all must match)" },
    "signing-key": signingKeyArg,
    "log-db": logDbArg,
    config: configArg,
  },
  async run({ args, rawArgs }) {
    const tags = flagValues(rawArgs, "tag");
    const parsed = exportFilterSchema.safeParse({
      tag: tags.length > 0 ? tags : undefined,
      start_date: args["start-date"],
      end_date: args["end-date"],
      agent: args.agent,
      user: args.user,
      task: args.task,
    });
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new UsageError(`--${String(issue.path[0]).replace("_", "-")}: ${issue.message}`);
    }
    const format = args.format;
    const output = args.output;
    await withCliAdmin({ logDb: args["log-db"], signingKey: args["signing-key"], config: args.config }, async (admin, settings) => {
      if (!admin.signs) throw new IoError(`exports are signed: ${missingKeyHelp(settings)}`);
      const run = admin.trail.export(format, parsed.data, cliActor());
      const fd = output === undefined ? 1 : opening(`--output ${output}`, () => openSync(output, "w", 0o600));
      try {
        await writeExport(run, fd, output !== undefined && process.stderr.isTTY);
      } finally {
        if (fd !== 1) closeSync(fd);
      }
      const manifest = await admin.trail.manifest(run.id);
      if (!manifest) throw new IoError(`the export ${run.id} ended, but its manifest is not in the trail`);
      if (output !== undefined) {
        writeFileSync(`${output}.manifest.json`, `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
        process.stderr.write(
          `Exported ${manifest.record_count} records to ${output} (sha256 ${manifest.sha256}); manifest: ${output}.manifest.json\n`,
        );
      } else {
        process.stderr.write(`agent-attr: exported ${manifest.record_count} records; use --output FILE for a manifest beside the file\n`);
      }
    });
  },
});

/**
 * Writes the export's stream to `fd`, with progress on a terminal. An export cut off (broken pipe,
 * disk full, Ctrl-C) is cancelled — recorded as cancelled, as the API does — and fails.
 */
async function writeExport(run: AuditExport, fd: number, showProgress: boolean): Promise<void> {
  const total = showProgress && run.total ? await run.total() : null;
  let shown = 0;
  let interrupted = false;
  const onInterrupt = () => (interrupted = true);
  process.once("SIGINT", onInterrupt);
  process.once("SIGTERM", onInterrupt);
  const reader = run.stream().getReader();
  try {
    for (let next = await reader.read(); !next.done; next = await reader.read()) {
      writeAll(fd, next.value);
      if (total !== null && run.exported - shown >= 10_000) {
        shown = run.exported;
        const percent = total ? Math.floor((100 * run.exported) / total) : 100;
        process.stderr.write(`\rExporting: ${run.exported} / ${total} records (${percent}%)`);
      }
      // Let a signal handler run between chunks.
      await new Promise((resolve) => setImmediate(resolve));
      if (interrupted) throw new InterruptedError(`interrupted after ${run.exported} records; the export is recorded as cancelled`);
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    if (error instanceof InterruptedError || error instanceof ExportRefusedError) throw error;
    const reason = errorMessage(error);
    throw new IoError(`the export stopped after ${run.exported} records (${reason}); it is recorded as cancelled, without a manifest`);
  } finally {
    process.off("SIGINT", onInterrupt);
    process.off("SIGTERM", onInterrupt);
  }
  if (total !== null) process.stderr.write("\r\x1b[K");
}

/** writeSync may write less than asked (pipes): write the rest. */
function writeAll(fd: number, chunk: Uint8Array): void {
  let written = 0;
  while (written < chunk.byteLength) written += writeSync(fd, chunk, written);
}

const verifyExportCommand = defineCommand({
  meta: {
    name: "verify-export",
    description:
      "Check an export against its signed manifest, offline (exit 0 intact and signed by --public-key; 1 changed; 6 integrity ok but signer not pinned)",
  },
  args: {
    file: { type: "positional", required: true, description: "The exported file" },
    manifest: { type: "string", description: "The manifest (default FILE.manifest.json)", valueHint: "FILE" },
    "public-key": {
      type: "string",
      description: "Require the manifest to be signed by this public key (PEM, from 'audit pubkey')",
      valueHint: "FILE",
    },
  },
  async run({ args }) {
    const keyFile = args["public-key"];
    const pinned = keyFile ? opening(`--public-key ${keyFile}`, () => readFileSync(keyFile, "utf8")) : undefined;
    const manifest = args.manifest ?? `${args.file}.manifest.json`;
    let check: Awaited<ReturnType<typeof verifyExport>>;
    try {
      check = await verifyExport(args.file, manifest, pinned);
    } catch (error) {
      throw new IoError(errorMessage(error));
    }
    if (check.ok) {
      process.stdout.write(`${check.message}\n`);
      // Without a trusted key the result is not "intact": a re-signed forgery would look the same.
      if (!check.signerPinned) process.exitCode = exitCodes.unconfirmed;
    } else {
      process.stdout.write(`Export NOT intact: ${check.message}\n`);
      process.exitCode = exitCodes.tampered;
    }
  },
});

export const exportCommands = { export: exportCommand, "verify-export": verifyExportCommand };
