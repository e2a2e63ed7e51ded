/** Starts the real proxy in process on port 0 against a fake upstream, with a temp audit DB. */
import { afterAll, beforeAll } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ConfigInput } from "../../src/config/schema.ts";
import { parseConfig } from "../../src/config/load.ts";
import { startProxy, type ProxyServer } from "../../src/server/serve.ts";
import type { AuditRecord } from "../../src/trail/record.ts";
import type { Logger } from "../../src/plugin.ts";
import { startFakeUpstream, type FakeUpstream } from "./fake-upstream.ts";

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "agent-attr-test-"));
}

export interface TestProxy extends ProxyServer {
  logDb: string;
  /** All records, oldest first, once finished calls have recorded and pending writes are committed. */
  records(): Promise<AuditRecord[]>;
  /** Waits until `n` records have a final outcome (streams record when they end). */
  settled(n: number, timeoutMs?: number): Promise<AuditRecord[]>;
}

export async function startTestProxy(
  upstreamURL: string,
  config: ConfigInput = {},
  options: { adminToken?: string; auditorToken?: string; logDb?: string; log?: Logger } = {},
): Promise<TestProxy> {
  process.env.AGENT_ATTR_OPENAI_BASE_URL = `${upstreamURL}/v1`;
  process.env.AGENT_ATTR_ANTHROPIC_BASE_URL = upstreamURL;
  const { logDb = join(tempDir(), "audit.db"), ...start } = options;
  const parsed = parseConfig({ ...config, server: { port: 0, ...config.server } });
  const proxy = await startProxy(parsed, { logDb, ...start });
  const records = async () => {
    await Promise.all(proxy.runtime.inflight);
    await proxy.runtime.store.flush();
    await proxy.runtime.sinks.drained();
    const page = await proxy.runtime.reader.records({ limit: 1000 });
    return page.records.reverse();
  };
  return {
    ...proxy,
    logDb,
    records,
    async settled(n, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        await Promise.all(proxy.runtime.inflight);
        await Bun.sleep(5);
        const all = await records();
        if (all.filter((r) => r.outcome !== null).length >= n || Date.now() > deadline) return all;
        await Bun.sleep(20);
      }
    },
  };
}

/**
 * For a test file: a fake upstream and a proxy in front of it, started before its tests and
 * stopped after them. Read `setup.upstream` / `setup.proxy` inside tests.
 */
export function proxyBeforeAll(config: ConfigInput = {}): { upstream: FakeUpstream; proxy: TestProxy } {
  const setup = {} as { upstream: FakeUpstream; proxy: TestProxy };
  beforeAll(async () => {
    setup.upstream = await startFakeUpstream();
    setup.proxy = await startTestProxy(setup.upstream.url, config);
  });
  afterAll(async () => {
    await setup.proxy.stop();
    await setup.upstream.stop();
  });
  return setup;
}
