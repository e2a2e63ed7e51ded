// Preloaded before every test file (bunfig.toml). Most tests here start processes, servers or
// databases; on a loaded 2-core machine a CLI process alone can take seconds to start, so the
// default per-test timeout is 30 s instead of bun's 5 s. It bounds a hung test; it is never an
// assertion about speed (performance is measured by `bun run bench`).
import { setDefaultTimeout } from "bun:test";

setDefaultTimeout(30_000);
