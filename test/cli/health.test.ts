// `agent-attr health`, the container HEALTHCHECK (the image has no curl): exit 0 when the proxy
// answers /healthz, 7 when it does not; it finds the proxy as `proxy start` would listen, PORT
// and HOST included (the variables container platforms set).
import { expect, test } from "bun:test";
import { join } from "node:path";
import { cliPath, runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";

function freePort(): number {
  const probe = Bun.serve({ port: 0, fetch: () => new Response() });
  const port = probe.port!;
  probe.stop(true);
  return port;
}

test("proxy start listens on PORT/HOST from the environment, and health finds it there", async () => {
  const dir = tempDir();
  const port = freePort();
  const env = { PORT: String(port), HOST: "127.0.0.1" };
  const child = Bun.spawn(["bun", cliPath, "proxy", "start", "--log-db", join(dir, "audit.db")], {
    cwd: dir,
    env: { ...process.env, NO_COLOR: "1", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    let health = await runCli(["health"], { cwd: dir, env });
    for (let i = 0; health.exitCode !== 0 && i < 100; i++) {
      await Bun.sleep(50);
      health = await runCli(["health"], { cwd: dir, env });
    }
    expect(health.exitCode).toBe(0);
    expect(health.stdout).toContain(`healthy: http://127.0.0.1:${port}/healthz answered 200`);
    // A flag wins over the environment, as for proxy start.
    const elsewhere = await runCli(["health", "--port", String(freePort())], { cwd: dir, env });
    expect(elsewhere.exitCode).toBe(7);
  } finally {
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
  }
  const stdout = await new Response(child.stdout).text();
  expect(stdout).toContain(`listening on http://127.0.0.1:${port}`);
}, 20_000);

test("health: exit 7 and why when nothing answers; a bad --url is a usage error", async () => {
  const down = await runCli(["health", "--url", `http://127.0.0.1:${freePort()}`, "--timeout", "2000"]);
  expect(down.exitCode).toBe(7);
  expect(down.stdout).toContain("unhealthy");
  const bad = await runCli(["health", "--url", "not a url"]);
  expect(bad.exitCode).toBe(2);
}, 15_000);
