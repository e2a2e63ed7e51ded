// Where a worker thread's code is, in a checkout and in the compiled binary of each platform. Bun
// embeds the entry points under /$bunfs/root/ on Linux and macOS and under B:/~BUN/root/ on Windows
// (test/release checks each release binary carries its workers at exactly these paths).
import { expect, test } from "bun:test";
import { auditWorkerURL } from "../../../src/store/sqlite/_worker-url.ts";

test("in a checkout: the .ts file beside the module", () => {
  expect(auditWorkerURL("writer-worker", "file:///work/agent-attr/src/store/sqlite/_worker-url.ts")).toBe(
    "file:///work/agent-attr/src/store/sqlite/writer-worker.ts",
  );
});

test("in a Linux or macOS binary: the embedded .js under /$bunfs/root/", () => {
  expect(auditWorkerURL("reader-worker", "file:///$bunfs/root/agent-attr-0.1.0-linux-arm64")).toBe(
    "/$bunfs/root/store/sqlite/reader-worker.js",
  );
});

test("in a Windows binary: the embedded .js under B:/~BUN/root/", () => {
  expect(auditWorkerURL("verify-worker", "file:///B:/~BUN/root/agent-attr-0.1.0-windows-x64.exe")).toBe(
    "B:/~BUN/root/store/sqlite/verify-worker.js",
  );
});
