// The hook runners (src/pipeline/hooks.ts): hooks that answer synchronously are run without a
// promise (the hot path awaits nothing then), a hook that answers with a promise is awaited, and
// either way the order, the result and what a throw means are the same.
import { expect, test } from "bun:test";
import { ProxyError } from "../../src/errors.ts";
import { isPromiseLike, runFirst, runMerge, runSequential } from "../../src/pipeline/hooks.ts";
import { PluginError } from "../../src/plugin.ts";

type Hook = { name: string; answer?: () => unknown };
const plugins = (...hooks: Hook[]) => hooks;
const log = () => {
  const lines: string[] = [];
  return { lines, logger: { info: () => {}, warn: () => {}, error: (line: string) => lines.push(line) } };
};

test("runFirst: hooks that all answer synchronously give their result without a promise", () => {
  const ran: string[] = [];
  const found = runFirst(
    plugins(
      { name: "none", answer: () => (ran.push("none"), null) },
      { name: "no hook" },
      { name: "first", answer: () => (ran.push("first"), 1) },
      { name: "later", answer: () => (ran.push("later"), 2) },
    ),
    "price",
    (plugin) => plugin.answer as (() => number | null) | undefined,
    "refuse",
  );
  expect(isPromiseLike(found)).toBe(false);
  expect(found).toEqual({ plugin: expect.objectContaining({ name: "first" }), value: 1 });
  expect(ran).toEqual(["none", "first"]);
});

test("runFirst: a hook answering with a promise is awaited, and the plugins after it run in order", async () => {
  const ran: string[] = [];
  const found = runFirst(
    plugins(
      { name: "sync null", answer: () => (ran.push("sync null"), null) },
      { name: "async null", answer: async () => (ran.push("async null"), null) },
      { name: "sync value", answer: () => (ran.push("sync value"), "v") },
      { name: "never", answer: () => (ran.push("never"), "w") },
    ),
    "authenticate",
    (plugin) => plugin.answer as (() => string | null | Promise<string | null>) | undefined,
    "refuse",
  );
  expect(isPromiseLike(found)).toBe(true);
  expect((await found)?.plugin.name).toBe("sync value");
  expect(ran).toEqual(["sync null", "async null", "sync value"]);
});

test("refuse: a synchronous throw and an async rejection are both named after plugin and hook; a ProxyError passes as is", async () => {
  const bind = (plugin: Hook) => plugin.answer;
  expect(() =>
    runSequential(
      plugins({
        name: "thrower",
        answer: () => {
          throw new Error("boom");
        },
      }),
      "limit.check",
      bind,
      "refuse",
    ),
  ).toThrow("[plugin thrower] limit.check: boom");
  const rejected = runSequential(
    plugins({
      name: "rejecter",
      answer: async () => {
        throw new Error("late");
      },
    }),
    "limit.check",
    bind,
    "refuse",
  );
  expect(rejected).rejects.toBeInstanceOf(PluginError);
  await expect(rejected).rejects.toThrow("[plugin rejecter] limit.check: late");
  const refusal = new ProxyError("rate_limited", "slow down");
  expect(() =>
    runSequential(
      plugins({
        name: "limiter",
        answer: () => {
          throw refusal;
        },
      }),
      "limit.check",
      bind,
      "refuse",
    ),
  ).toThrow(refusal);
});

test("log: a throw is logged and the next plugin runs, synchronously or not", async () => {
  const { lines, logger } = log();
  const sync = runFirst(
    plugins(
      {
        name: "broken",
        answer: () => {
          throw new Error("bad rates");
        },
      },
      { name: "pricing", answer: () => 7 },
    ),
    "price",
    (plugin) => plugin.answer as (() => number) | undefined,
    { log: logger },
  );
  expect(sync).toEqual({ plugin: expect.objectContaining({ name: "pricing" }), value: 7 });
  const later = runFirst(
    plugins(
      {
        name: "broken later",
        answer: async () => {
          throw new Error("gone");
        },
      },
      { name: "pricing", answer: () => 8 },
    ),
    "price",
    (plugin) => plugin.answer as (() => number | Promise<number>) | undefined,
    { log: logger },
  );
  expect((await later)?.value).toBe(8);
  expect(lines).toEqual(["[plugin broken] price: bad rates", "[plugin broken later] price: gone"]);
});

test("runMerge: later fields override earlier ones, plain objects merge key by key, each hook sees a copy of what is merged", async () => {
  type A = { agent: string | null; user: string | null; tags: Record<string, string> };
  const seen: A[] = [];
  const parts: Record<string, Partial<A> | Promise<Partial<A>>> = {
    header: { agent: "a1", user: "claimed", tags: { team: "x" } },
    verify: Promise.resolve({ user: "verified", agent: null, tags: { project: "p" } }),
    last: { tags: { team: "y" } },
  };
  const bind = (plugin: Hook) => (merged: A) => {
    seen.push(merged);
    merged.agent = "mutated"; // a hook's copy: never what is merged
    return parts[plugin.name]!;
  };
  const initial: A = { agent: null, user: null, tags: {} };
  const syncOnly = runMerge(
    plugins({ name: "header" }, { name: "no hook" }),
    "attribute",
    initial,
    (p) => (p.name === "no hook" ? undefined : bind(p)),
    "refuse",
  );
  expect(isPromiseLike(syncOnly)).toBe(false);
  expect(syncOnly).toEqual({ agent: "a1", user: "claimed", tags: { team: "x" } });
  seen.length = 0;
  const merged = await runMerge(plugins({ name: "header" }, { name: "verify" }, { name: "last" }), "attribute", initial, bind, "refuse");
  expect(merged).toEqual({ agent: "a1", user: "verified", tags: { team: "y", project: "p" } });
  expect(seen.map((s) => s.user)).toEqual([null, "claimed", "verified"]);
  expect(initial).toEqual({ agent: null, user: null, tags: {} });
});
