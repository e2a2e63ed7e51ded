// `proxy start --log-db postgres://user:PASSWORD@…`: the start-up line names the trail without its password.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { pgSchema, pgServer, type PgSchema } from "../helpers/postgres.ts";
import { spawnProxy } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";

let pg: PgSchema;
beforeAll(async () => {
  pg = await pgSchema("start_log");
});
afterAll(async () => {
  await pg.drop();
});

test("the listening line masks the PostgreSQL password of --log-db", async () => {
  const url = new URL(pgServer);
  url.password = "S3CRET-PG-PASSWORD"; // the local server trusts loopback: any password opens it
  const logDb = `${url.toString()}?schema=${pg.schema}`;
  const proxy = await spawnProxy(["--log-db", logDb], { cwd: tempDir(), env: { AGENT_ATTR_LOG_DB: "" } });
  try {
    expect(proxy.output()).toContain("audit: postgres://");
    expect(proxy.output()).toContain(":***@");
    expect(proxy.output()).not.toContain("S3CRET-PG-PASSWORD");
  } finally {
    proxy.child.kill("SIGTERM");
    await proxy.child.exited;
  }
  expect(proxy.output()).not.toContain("S3CRET-PG-PASSWORD");
});
