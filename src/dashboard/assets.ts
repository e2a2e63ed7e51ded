// The dashboard's page, script and styles, bundled when this module is compiled (a Bun macro):
// the single binary carries them, nothing is read from disk at run time.
import { bundleDashboard } from "./bundle.ts" with { type: "macro" };

export const assets: { html: string; js: string; css: string } = bundleDashboard();
