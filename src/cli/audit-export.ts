/** `agent-attr audit export` and `audit verify-export`: signed exports that stand on their own. */
import { defineCommand } from "citty";
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { exportFilterSchema, exportFormats, verifyExport } from "../trail/export.ts";
import { cliAuditSettings } from "./audit-settings.ts";
import { cliActor, missingKeyHelp, openCliTrail, signingKeyArg } from "./audit-trail.ts";
import { configArg, exitCodes, InterruptedError, IoError, logDbArg, opening, UsageError } from "./_shared.ts";
import { errorMessage } from "../errors.ts";

const exportCommand = defineCommand({
  meta: { name: "export", description: "Export records (streamed) with a signed manifest beside the file" },
  args: {
    format: { type: "enum", options: [...exportFormats], required: true, description: "csv | json | ndjson" },
    output: { type: "string", description: "File to write (its manifest goes to FILE.manifest.json); default stdout, without manifest", valueHint: "FILE" },
    "start-date": { type: "string", description: "From this day (YYYY-MM-DD, UTC) or ISO 8601 time" },
    "end-date": { type: "string", description: "Up to and including this day, or up to this ISO 8601 time" },
    agent: { type: "string", description: "Only this agent" },
    user: { type: "string", description: "Only this user" },
    task: { type: "string", description: "Only this task context" },
    "signing-key": signingKeyArg,
    "log-db": logDbArg,
    config: configArg,
  },
  async run({ args }) {
    const parsed = exportFilterSchema.safeParse({
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
    const settings = await cliAuditSettings({ logDb: args["log-db"], signingKey: args["signing-key"], config: args.config });
    const { trail, key, close } = await openCliTrail(settings);
    if (!key) {
      await close();
      throw new IoError(`exports are signed: ${missingKeyHelp(settings)}`);
    }
    let fd: number | null = null;
    try {
      const run = trail.export(args.format, parsed.data, cliActor());
      const progress = args.output !== undefined && process.stderr.isTTY ? { total: await run.total(), shown: 0 } : null;
      fd = args.output === undefined ? 1 : opening(`--output ${args.output}`, () => openSync(args.output!, "w", 0o600));
      // An export cut off (broken pipe, disk full, Ctrl-C) is recorded as cancelled, as the API does.
      let interrupted = false;
      const onInterrupt = () => (interrupted = true);
      process.once("SIGINT", onInterrupt);
      process.once("SIGTERM", onInterrupt);
      try {
        for await (const chunk of run.chunks()) {
          writeAll(fd, chunk);
          if (progress && run.exported - progress.shown >= 10_000) {
            progress.shown = run.exported;
            const percent = progress.total ? Math.floor((100 * run.exported) / progress.total) : 100;
            process.stderr.write(`\rExporting: ${run.exported} / ${progress.total} records (${percent}%)`);
          }
          // Let a signal handler run between chunks.
          await new Promise((resolve) => setImmediate(resolve));
          if (interrupted) throw new InterruptedError(`interrupted after ${run.exported} records; the export is recorded as cancelled`);
        }
      } catch (error) {
        await run.cancel();
        if (error instanceof InterruptedError) throw error;
        const reason = errorMessage(error);
        throw new IoError(`the export stopped after ${run.exported} records (${reason}); it is recorded as cancelled, without a manifest`);
      } finally {
        process.off("SIGINT", onInterrupt);
        process.off("SIGTERM", onInterrupt);
      }
      if (progress) process.stderr.write("\r\x1b[K");
      const manifest = run.manifest!;
      if (args.output !== undefined) {
        writeFileSync(`${args.output}.manifest.json`, `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
        process.stderr.write(
          `Exported ${manifest.record_count} records to ${args.output} (sha256 ${manifest.sha256}); manifest: ${args.output}.manifest.json\n`,
        );
      } else {
        process.stderr.write(`agent-attr: exported ${manifest.record_count} records; use --output FILE for a manifest beside the file\n`);
      }
    } finally {
      if (fd !== null && fd !== 1) closeSync(fd);
      await close();
    }
  },
});

/** writeSync may write less than asked (pipes): write the rest. */
function writeAll(fd: number, chunk: Uint8Array): void {
  let written = 0;
  while (written < chunk.byteLength) written += writeSync(fd, chunk, written);
}

const verifyExportCommand = defineCommand({
  meta: {
    name: "verify-export",
    description: "Check an export against its signed manifest, offline (exit 0 intact and signed by --public-key; 1 changed; 6 integrity ok but signer not pinned)",
  },
  args: {
    file: { type: "positional", required: true, description: "The exported file" },
    manifest: { type: "string", description: "The manifest (default FILE.manifest.json)", valueHint: "FILE" },
    "public-key": { type: "string", description: "Require the manifest to be signed by this public key (PEM, from 'audit pubkey')", valueHint: "FILE" },
  },
  async run({ args }) {
    const keyFile = args["public-key"];
    const pinned = keyFile ? opening(`--public-key ${keyFile}`, () => readFileSync(keyFile, "utf8")) : undefined;
    const manifest = args.manifest ?? `${args.file}.manifest.json`;
    let check;
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
