/**
 * Finds import cycles among the project's own modules (src/ and plugins/): `bun scripts/import-cycles.ts`
 * prints each cycle and exits 1 when there is one. Type-only imports count too — a cycle of types is
 * still a knot a reader has to untie. The test test/architecture.test.ts runs the same check.
 */
import { Glob } from "bun";
import { dirname, relative, resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
/** `import … from "x"`, `import type …`, `export … from "x"`, `import("x")`, `import "x"` — type-only included. */
const specifier = /(?:^|[;\s])(?:import|export)\s(?:[^'";]*?\sfrom\s)?\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

/** The project-relative module graph: each file and the project files it imports. */
export async function importGraph(folders: readonly string[] = ["src", "plugins"]): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  for (const folder of folders) {
    for await (const file of new Glob(`${folder}/**/*.ts`).scan({ cwd: root })) {
      if (file.endsWith(".d.ts")) continue;
      const source = await Bun.file(resolve(root, file)).text();
      const targets = [...source.matchAll(specifier)]
        .map((match) => (match[1] ?? match[2])!)
        .filter((path) => path.startsWith("."))
        .map((path) => relative(root, resolve(root, dirname(file), path)));
      graph.set(file, [...new Set(targets)]);
    }
  }
  return graph;
}

/** Every strongly connected group of more than one module (or a module importing itself). */
export function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const indexOf = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string) => {
    indexOf.set(node, index);
    low.set(node, index++);
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!graph.has(next)) continue;
      if (!indexOf.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, indexOf.get(next)!));
      }
    }
    if (low.get(node) === indexOf.get(node)) {
      const group: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        group.push(member);
      } while (member !== node);
      if (group.length > 1 || graph.get(node)?.includes(node)) found.push(group.sort());
    }
  };
  for (const node of graph.keys()) if (!indexOf.has(node)) visit(node);
  return found;
}

if (import.meta.main) {
  const found = cycles(await importGraph());
  for (const group of found) console.log(`import cycle: ${group.join(" ↔ ")}`);
  if (found.length > 0) process.exit(1);
  console.log("no import cycles in src/ or plugins/");
}
