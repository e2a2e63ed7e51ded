// After an erasure through the API of a running proxy, the erased user's id and task text are in
// no file beside the database: not the database (secure_delete), not the WAL (truncated after the
// erasure), not an intent-log segment (settled lines are not kept).
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy } from "../helpers/proxy.ts";

const user = "zoe-erasable-7731";
const task = "Zoe's confidential matter";

function filesContaining(dir: string, needle: string): string[] {
  return readdirSync(dir).filter((name) => readFileSync(join(dir, name)).includes(Buffer.from(needle)));
}

test("DELETE /audit/user/:id leaves no byte of the user in the database, its WAL or the intent log", async () => {
  const upstream = await startFakeUpstream();
  const proxy = await startTestProxy(upstream.url);
  try {
    const call = async (userId: string, taskContext: string) => {
      const response = await fetch(`${proxy.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-agent-id": "bot", "x-user-id": userId, "x-task-context": taskContext },
        body: JSON.stringify({ model: "gpt-4o", messages: [] }),
      });
      await response.arrayBuffer();
    };
    for (let i = 0; i < 20; i++) await call(user, task);
    await call("someone-else", "other work");
    await proxy.settled(21);
    const dir = dirname(proxy.logDb);
    expect(filesContaining(dir, user).length).toBeGreaterThan(0);
    expect((await fetch(`${proxy.url}/audit/user/${user}`, { method: "DELETE" })).status).toBe(200);
    expect(filesContaining(dir, user)).toEqual([]);
    expect(filesContaining(dir, task)).toEqual([]);
    expect(filesContaining(dir, "someone-else").length).toBeGreaterThan(0);
  } finally {
    await proxy.stop();
    await upstream.stop();
  }
});
