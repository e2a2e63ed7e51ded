// The stage table is data (src/pipeline/stages.ts); the docs print it. Every pipeline table in the
// docs lists the same stages, in the same order, with the same hooks.
import { expect, test } from "bun:test";
import { Glob } from "bun";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { stages } from "../../src/pipeline/stages.ts";

const root = resolve(import.meta.dir, "../..");
const docs = ["README.md", ...new Glob("docs/**/*.md").scanSync({ cwd: root })];

/** Rows `| N | stage | hook… |` of tables whose first row is stage 1, `route`. */
function stageTables(text: string): { stage: string; hook: string }[][] {
  const tables: { stage: string; hook: string }[][] = [];
  let current: { stage: string; hook: string }[] | null = null;
  for (const line of text.split("\n")) {
    const row = /^\| (\d+) \| (\w+) \| (.*?) \|/.exec(line);
    if (row && row[1] === "1" && row[2] === "route") tables.push((current = []));
    if (row && current) current.push({ stage: row[2]!, hook: row[3]! });
    else if (!row) current = null;
  }
  return tables;
}

test("the docs' pipeline tables are the stage table, row for row", () => {
  const found = docs.flatMap((file) => stageTables(readFileSync(resolve(root, file), "utf8")).map((rows) => ({ file, rows })));
  expect(found.length).toBeGreaterThan(0);
  for (const { file, rows } of found) {
    expect({ file, stages: rows.map((r) => r.stage) }).toEqual({ file, stages: stages.map((s) => s.stage) });
    for (const [i, row] of rows.entries()) expect({ file, hook: row.hook.includes(stages[i]!.hook) }).toEqual({ file, hook: true });
  }
});

test("the pipeline runs the stages it documents: every stage's hook is a hook of the plugin contract", () => {
  const contract = readFileSync(resolve(root, "src/plugin.ts"), "utf8");
  for (const { hook } of stages) {
    const [key, member] = hook.split(".");
    expect(contract).toMatch(new RegExp(`\\b${key}\\?\\??[:(]`));
    if (member) expect(contract).toMatch(new RegExp(`\\b${member}\\??[:(]`));
  }
});
