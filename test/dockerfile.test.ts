// The image, run without Docker: the Dockerfile's ENV, ENTRYPOINT + CMD and HEALTHCHECK are run
// as the container would run them (its /data and /keys volumes mapped to temp folders, PORT set as
// a platform would). The proxy starts from them alone, the HEALTHCHECK passes against it, and the
// signing key lands on the /keys volume, apart from the database on /data.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.ts";
import { cliPath, runCli } from "./helpers/process.ts";
import { tempDir } from "./helpers/proxy.ts";

const dockerfile = readFileSync(resolve(import.meta.dir, "../Dockerfile"), "utf8").replace(/\\\n\s*/g, " ");
const runtimeStage = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));

function instruction(name: string): string[] {
  return runtimeStage
    .split("\n")
    .filter((line) => line.startsWith(`${name} `))
    .map((line) => line.slice(name.length + 1).trim());
}
const execForm = (text: string) => JSON.parse(text.slice(text.indexOf("["))) as string[];

/** ENV KEY=VALUE pairs, with the image's volumes mapped to folders of this machine. */
function imageEnv(volumes: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of instruction("ENV")) {
    for (const [, key, value] of line.matchAll(/(\w+)=(\S+)/g)) {
      env[key!] = Object.entries(volumes).reduce((v, [from, to]) => (v.startsWith(`${from}/`) ? to + v.slice(from.length) : v), value!);
    }
  }
  return env;
}

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
});

test("the image's CMD starts the proxy from its ENV alone, its HEALTHCHECK passes, and the signing key is on /keys", async () => {
  const data = tempDir();
  const keys = tempDir();
  const probe = Bun.serve({ port: 0, fetch: () => new Response() });
  const port = String(probe.port);
  probe.stop(true);
  const env: Record<string, string> = {
    ...imageEnv({ "/data": data, "/keys": keys }),
    PORT: port, // the platform's
    AGENT_ATTR_ADMIN_TOKEN: "an-admin-token-of-some-length", // HOST=0.0.0.0 needs one (README)
    AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1`,
  };
  expect(env.HOST).toBe("0.0.0.0");
  const [entrypoint] = instruction("ENTRYPOINT").map(execForm);
  const [cmd] = instruction("CMD").map(execForm);
  const [healthcheck] = instruction("HEALTHCHECK").map(execForm);
  expect(entrypoint).toEqual(["agent-attr"]);
  expect(healthcheck![0]).toBe("agent-attr");

  const child = Bun.spawn(["bun", cliPath, ...cmd!], {
    cwd: data,
    env: { ...process.env, NO_COLOR: "1", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    let health = await runCli(healthcheck!.slice(1), { cwd: data, env });
    for (let i = 0; health.exitCode !== 0 && i < 100; i++) {
      await Bun.sleep(50);
      health = await runCli(healthcheck!.slice(1), { cwd: data, env });
    }
    expect(health.exitCode).toBe(0);
    const call = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o", messages: [] }),
    });
    expect(call.status).toBe(200);
  } finally {
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
  }
  expect(readdirSync(keys)).toEqual(["audit.signing-key"]);
  expect(existsSync(join(data, "audit.db"))).toBe(true);
  expect(readdirSync(data).filter((name) => name.includes("signing-key"))).toEqual([]);
  // The CLI in the container (docker exec … agent-attr audit verify) finds the key through the same ENV.
  const verify = await runCli(["audit", "verify"], { cwd: data, env });
  expect(verify.exitCode).toBe(0);
  expect(verify.stdout).toContain("signed checkpoints checked");
}, 30_000);
