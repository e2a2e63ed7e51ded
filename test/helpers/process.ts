/** Runs the real CLI as a child process (`bun src/cli/main.ts ...`), as a user would. */
import type { Subprocess } from "bun";
import { resolve } from "node:path";

export const cliPath = resolve(import.meta.dir, "../../src/cli/main.ts");

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to its end; `timeoutMs` kills a command that would not end by itself (exit code then null → -1). */
export async function runCli(
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  const child = Bun.spawn(["bun", cliPath, ...args], {
    cwd: options.cwd,
    env: { ...process.env, NO_COLOR: "1", ...options.env },
    stdout: "pipe",
    stderr: "pipe",
    timeout: options.timeoutMs,
  });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { exitCode, stdout, stderr };
}

export interface ProxyProcess {
  child: Subprocess<"ignore", "pipe", "pipe">;
  url: string;
  /** Everything the process printed so far. */
  output(): string;
}

/** Starts `proxy start --port 0` and resolves with its URL once it listens. */
export async function spawnProxy(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<ProxyProcess> {
  const child = Bun.spawn(["bun", cliPath, "proxy", "start", "--port", "0", ...args], {
    cwd: options.cwd,
    env: { ...process.env, NO_COLOR: "1", ...options.env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let output = "";
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) output += decoder.decode(chunk, { stream: true });
  };
  void collect(child.stdout);
  void collect(child.stderr);
  const deadline = Date.now() + 10_000;
  for (;;) {
    const match = /listening on (http:\/\/\S+)/.exec(output);
    if (match) return { child, url: match[1]!, output: () => output };
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill();
      throw new Error(`proxy did not start:\n${output}`);
    }
    await Bun.sleep(20);
  }
}
