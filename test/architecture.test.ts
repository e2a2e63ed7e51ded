// The layout holds: no import cycle among the project's own modules (the check of
// scripts/import-cycles.ts), the storage contract names no driver, the trail's shared code needs
// no store, and the built-in plugins import only what a third-party plugin can ("agent-attr").
import { expect, test } from "bun:test";
import { join } from "node:path";
import { cycles, importGraph } from "../scripts/import-cycles.ts";

const graph = await importGraph();

test("no import cycle in src/ or plugins/", () => {
  expect(cycles(graph)).toEqual([]);
});

test("the cycle check finds a cycle (it is not vacuous)", () => {
  const knot = new Map([
    ["a.ts", ["b.ts"]],
    ["b.ts", ["c.ts"]],
    ["c.ts", ["a.ts"]],
    ["d.ts", ["a.ts"]],
  ]);
  expect(cycles(knot)).toEqual([["a.ts", "b.ts", "c.ts"]]);
});

/** Everything a module imports, directly or not. */
function reachable(from: string): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string) => {
    for (const next of graph.get(file) ?? []) {
      if (seen.has(next)) continue;
      seen.add(next);
      visit(next);
    }
  };
  visit(from);
  return seen;
}

test("the storage contract reaches no driver: nothing in it is SQLite's", async () => {
  const reached = [...reachable("src/store/contract.ts")];
  expect(reached.filter((file) => file.startsWith("src/store/sqlite/"))).toEqual([]);
  expect(await Bun.file(join(import.meta.dir, "../src/store/contract.ts")).text()).not.toContain("bun:sqlite");
});

test("the trail's shared code (src/trail) imports no driver", () => {
  for (const file of [...graph.keys()].filter((file) => file.startsWith("src/trail/"))) {
    expect({ file, drivers: [...reachable(file)].filter((target) => target.startsWith("src/store/sqlite/")) }).toEqual({
      file,
      drivers: [],
    });
  }
});

test("a built-in plugin imports the public API and plugins only, as a third-party plugin would (no helper beside them)", () => {
  const inAPlugin = (file: string) => /^plugins\/[^/]+\//.test(file);
  for (const [file, targets] of graph) {
    if (!inAPlugin(file)) continue; // plugins/index.ts lists them
    expect({ file, outside: targets.filter((target) => !inAPlugin(target)) }).toEqual({ file, outside: [] });
  }
});
