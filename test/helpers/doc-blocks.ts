// The code blocks of the docs, as the docs tests read them.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

export const repoRoot = resolve(import.meta.dir, "../..");

export const readPage = (page: string) => readFileSync(resolve(repoRoot, page), "utf8");

export interface DocBlock {
  page: string;
  line: number;
  /** From `<!-- file: NAME -->` just before the block (a block another one imports needs it). */
  file: string | null;
  /** From `<!-- not-checked: REASON -->` just before the block. */
  notChecked: string | null;
  code: string;
}

/** The ```ts blocks of a page, with the HTML comment on the line before each, if any. */
export function tsBlocks(page: string): DocBlock[] {
  const lines = readPage(page).split("\n");
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```/.test(lines[i]!)) continue;
    const end = lines.findIndex((line, j) => j > i && /^```\s*$/.test(line));
    if (lines[i]!.trim() === "```ts") {
      const before = i > 0 ? lines[i - 1]! : "";
      blocks.push({
        page,
        line: i + 1,
        file: /^<!-- file: (\S+) -->$/.exec(before)?.[1] ?? null,
        notChecked: /^<!-- not-checked: (.+) -->$/.exec(before)?.[1] ?? null,
        code: `${lines.slice(i + 1, end).join("\n")}\n`,
      });
    }
    i = end;
  }
  return blocks;
}

/** The block of `page` named `file`; throws when there is none, so a renamed example fails its test. */
export function namedBlock(page: string, file: string): string {
  const block = tsBlocks(page).find((b) => b.file === file);
  if (!block) throw new Error(`${page} has no block marked <!-- file: ${file} -->`);
  return block.code;
}
