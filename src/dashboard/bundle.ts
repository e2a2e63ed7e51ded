/**
 * Bundles the dashboard's front end (./ui) with Bun's bundler. It runs as a macro (see
 * ./assets.ts): at `bun build --compile` time its result is written into the binary, and in a
 * checkout when ./assets.ts is first imported. The bundler cannot be called from inside a macro
 * (it would wait for itself), so it runs as `bun build` in a child process.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function bundleDashboard(): { html: string; js: string; css: string } {
  const ui = join(import.meta.dir, "ui");
  const out = mkdtempSync(join(tmpdir(), "agent-attr-dashboard-"));
  try {
    const build = Bun.spawnSync(
      [
        process.execPath,
        "build",
        join(ui, "main.tsx"),
        "--outdir",
        out,
        "--target=browser",
        "--minify",
        "--entry-naming=app.[ext]",
        "--asset-naming=[name].[ext]",
      ],
      { cwd: join(import.meta.dir, "../.."), env: { ...process.env, NO_COLOR: "1" } },
    );
    if (build.exitCode !== 0) throw new Error(`bundling the dashboard failed:\n${build.stderr.toString()}${build.stdout.toString()}`);
    return {
      html: readFileSync(join(ui, "index.html"), "utf8"),
      js: readFileSync(join(out, "app.js"), "utf8"),
      css: readFileSync(join(out, "app.css"), "utf8"),
    };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
