/**
 * Where a worker's code is. In the compiled binary (`bun run build` lists each worker as another
 * entrypoint) it lives in Bun's embedded filesystem, at its path relative to the entrypoints'
 * common folder (src/), as .js; in a checkout it is the .ts file in this folder.
 */
export function auditWorkerURL(name: "writer-worker" | "verify-worker" | "reader-worker"): string {
  if (import.meta.url.startsWith("file:///$bunfs/")) return `/$bunfs/root/store/sqlite/${name}.js`;
  return new URL(`./${name}.ts`, import.meta.url).href;
}
