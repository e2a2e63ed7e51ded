/**
 * `bun run build`: the single binary for this machine, `dist/agent-attr`, stamped with the version,
 * commit and build date that `agent-attr --version` prints. `bun run release` builds every platform.
 */
import { resolve } from "node:path";
import { buildStamp, compile, root } from "./build-config.ts";

const outfile = resolve(root, "dist/agent-attr");
// Named as the release names platforms; "host" because the C library (glibc or musl) is this machine's.
const os = process.platform === "win32" ? "windows" : process.platform;
compile({ outfile, stamp: buildStamp(`${os}-${process.arch}, host build`) });
console.log(`built ${outfile}`);
