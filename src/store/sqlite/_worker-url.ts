/**
 * Where a worker's code is. In the compiled binary (scripts/build-config.ts lists each worker as
 * another entry point) it lives in Bun's embedded filesystem, at its path relative to the entry
 * points' common folder (src/), as .js: under `/$bunfs/root/` on Linux and macOS, `B:/~BUN/root/`
 * on Windows. In a checkout it is the .ts file in this folder.
 */
/** Every worker thread of the audit store; each is an entry point of the binary (scripts/build-config.ts). */
export const auditWorkers = ["writer-worker", "verify-worker", "reader-worker"] as const;
type WorkerName = (typeof auditWorkers)[number];

/** The embedded filesystem's root, from the URL of a module of the binary (all of them are under it). */
const embeddedRoot = /^file:\/\/(\/\$bunfs\/root\/|\/[A-Za-z]:\/~BUN\/root\/)/;

export function auditWorkerURL(name: WorkerName, moduleURL: string = import.meta.url): string {
  const embedded = embeddedRoot.exec(moduleURL);
  if (embedded) return `${embedded[1]!.replace(/^\/(?=[A-Za-z]:)/, "")}store/sqlite/${name}.js`;
  return new URL(`./${name}.ts`, moduleURL).href;
}
