// The docs are part of the product: every config and plugin they show type-checks against the
// declarations binary users get, and every relative link leads somewhere.
import { expect, test } from "bun:test";
import { Glob } from "bun";
import { copyFileSync, existsSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { declarationFile } from "../src/cli/types/generate.ts";
import { stages } from "../src/pipeline/stages.ts";
import { type DocBlock, readPage, repoRoot, tsBlocks } from "./helpers/doc-blocks.ts";
import { tempDir } from "./helpers/proxy.ts";
import { typeCheck } from "./helpers/tsc.ts";

const root = repoRoot;
const pages = ["README.md", ...new Glob("docs/**/*.md").scanSync({ cwd: root })].sort();
const read = readPage;

/** A config or a plugin: what a user copies into a file of their own. */
const isConfigOrPlugin = (block: DocBlock) => /\bdefine(Config|Plugin)\(/.test(block.code);

test("every config and plugin in README.md and docs/ type-checks with the declarations binary users get (one tsc run)", () => {
  const blocks = pages.flatMap(tsBlocks).filter(isConfigOrPlugin);
  const checked = blocks.filter((block) => block.notChecked === null);
  const dir = tempDir();
  copyFileSync(declarationFile, join(dir, "agent-attr-env.d.ts"));
  const files = checked.map((block, i) => {
    const file = block.file ?? `${block.page.replace(/\W+/g, "-")}-line-${block.line}-${i}.ts`;
    expect({ file, taken: existsSync(join(dir, file)) }).toEqual({ file, taken: false });
    writeFileSync(join(dir, file), block.code);
    return file;
  });
  // The examples the issue asks for are among them: the README's config, and in the plugin guide
  // the complete plugin, one per hook kind, a secondary sink and a provider.
  expect(files).toEqual(
    expect.arrayContaining([
      "team-tags.ts",
      "internal-rates.ts",
      "team-header.ts",
      "task-required.ts",
      "collector-sink.ts",
      "mini-llm.ts",
      "all.config.ts",
    ]),
  );
  expect(checked.some((block) => block.page === "README.md" && block.code.includes("defineConfig("))).toBe(true);
  // Marking a block unchecked is for deliberate fragments, and says why.
  expect(blocks.length - checked.length).toBeLessThanOrEqual(2);

  const result = typeCheck(dir, ["agent-attr-env.d.ts", ...files]);
  // Name the page and line of a failing block, not the temporary file.
  const output = checked.reduce((text, block, i) => text.replaceAll(files[i]!, `${block.page}:${block.line} (${files[i]})`), result.output);
  expect(output).toBe("");
  expect(result.exitCode).toBe(0);
}, 60_000);

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function anchorOf(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, "")
    .replace(/ /g, "-");
}

function anchors(page: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const line of withoutCode(read(page)).split("\n")) {
    const heading = /^#{1,6} (.+)$/.exec(line);
    if (!heading) continue;
    const base = anchorOf(heading[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    result.add(n === 0 ? base : `${base}-${n}`);
  }
  return result;
}

/** The page without its fenced code blocks, whose brackets are code, not links. */
function withoutCode(text: string): string {
  return text.replace(/^```[^\n]*\n[\s\S]*?^```\s*$/gm, "");
}

test("every relative link in README.md and docs/ points at a file that exists, and an anchor at a heading of its page", () => {
  const broken: string[] = [];
  let links = 0;
  for (const page of pages) {
    for (const [, target] of withoutCode(read(page)).matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/i.test(target!)) continue; // https:, mailto:
      links++;
      const [path, anchor] = target!.split("#") as [string, string | undefined];
      const file = path === "" ? resolve(root, page) : resolve(root, dirname(page), path);
      if (!existsSync(file)) broken.push(`${page}: ${target} (no file ${relative(root, file)})`);
      else if (anchor && file.endsWith(".md") && !anchors(relative(root, file)).has(anchor))
        broken.push(`${page}: ${target} (no heading #${anchor})`);
    }
  }
  expect(links).toBeGreaterThan(20);
  expect(broken).toEqual([]);
});

test("the plugin guide's hook-kind table puts every stage under the kind src/pipeline/stages.ts runs it with", () => {
  const rows = read("docs/plugins.md")
    .split("\n")
    .map((line) => /^\| (first|merge|sequential|broadcast|routed) \| (.*?) \|/.exec(line))
    .filter((row) => row !== null);
  const documented = rows.flatMap(([, kind, cell]) =>
    cell!
      .replace(/\([^)]*\)/g, "")
      .split(",")
      .map((stage) => `${stage.trim()}: ${kind}`),
  );
  expect(documented.sort()).toEqual(stages.map((s) => `${s.stage}: ${s.kind}`).sort());
});
