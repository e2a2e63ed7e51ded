/**
 * Generates ./agent-attr-env.d.ts.txt (written out as agent-attr-env.d.ts): the types of "agent-attr" and "agent-attr/plugins" for configs
 * and plugins that live outside this repository, where those modules come from the binary and
 * there is no node_modules. `bun run types` writes it (`bun run build` runs it first); `--check`
 * exits 1 when the committed file is not what the sources give.
 *
 * The declarations are derived from the sources by the TypeScript checker (its API), not written
 * by hand: every public export is printed with its types expanded, so option types that zod infers
 * (`z.input<typeof optionsSchema>`) become the plain object types they stand for and the file
 * needs no zod, Bun or Elysia types. Types the public ones mention but do not export go to
 * "agent-attr/internal"; types of other packages that remain (a bun:sqlite handle, an Elysia app)
 * are `any`.
 */
import {
  API,
  ObjectFlags,
  SignatureKind,
  SymbolFlags,
  TypeFlags,
  type Checker,
  type Project,
  type Signature,
  type Symbol as TsSymbol,
  type Type,
} from "typescript/unstable/async";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dir, "../../..");
/** `.txt` so this repository's own type check does not take its ambient modules for the sources. */
export const declarationFile = join(import.meta.dir, "agent-attr-env.d.ts.txt");

const publicModules = [
  { name: "agent-attr", file: join(root, "src/index.ts") },
  { name: "agent-attr/plugins", file: join(root, "plugins/index.ts") },
] as const;
const internalModule = "agent-attr/internal";

// TypeFormatFlags: print in full, and the structure of an alias rather than its name.
const noTruncation = 1;
const inTypeAlias = 8388608;

interface Context {
  checker: Checker;
  probe: Parameters<Checker["typeToString"]>[1];
  /** Public names: "agent-attr" → exported names. */
  exported: Map<string, Set<string>>;
  /** Public type aliases by the id of the type they stand for, printed by name wherever it appears. */
  aliases: Map<number, string>;
  /** Internal declarations to emit, keyed by their name in "agent-attr/internal". */
  internal: Map<string, { file: string; name: string; text: string | null }>;
  probeDir: string;
}

export async function generateDeclarations(): Promise<string> {
  const probeDir = mkdtempSync(join(tmpdir(), "agent-attr-types-"));
  const api = new API({ cwd: probeDir });
  try {
    // A project beside the sources that imports nothing: every name is then printed as
    // `import("module").Name`, which this generator maps to the module users import.
    const compilerOptions = {
      target: "ESNext",
      module: "Preserve",
      moduleResolution: "bundler",
      lib: ["ESNext", "DOM"],
      types: ["bun"],
      typeRoots: [join(root, "node_modules/@types")],
      strict: true,
      skipLibCheck: true,
      noEmit: true,
      allowImportingTsExtensions: true,
      paths: Object.fromEntries(publicModules.map((m) => [m.name, [m.file]])),
    };
    writeFileSync(
      join(probeDir, "tsconfig.json"),
      JSON.stringify({ compilerOptions, files: ["probe.ts", ...publicModules.map((m) => m.file)] }),
    );
    writeFileSync(join(probeDir, "probe.ts"), "export {};\n");
    const snapshot = await api.updateSnapshot({ openProjects: [join(probeDir, "tsconfig.json")] });
    const project = snapshot.getProjects()[0]!;
    const probe = (await project.program.getSourceFile(join(probeDir, "probe.ts")))!;
    const ctx: Context = { checker: project.checker, probe, exported: new Map(), aliases: new Map(), internal: new Map(), probeDir };
    const modules: { name: string; symbols: { name: string; symbol: TsSymbol }[] }[] = [];
    for (const { name, file } of publicModules) {
      const source = (await project.program.getSourceFile(file))!;
      const symbols = [];
      for (const exported of await ctx.checker.getExportsOfModule((await ctx.checker.getSymbolAtLocation(source))!)) {
        const symbol = exported.flags & SymbolFlags.Alias ? await ctx.checker.getAliasedSymbol(exported) : exported;
        symbols.push({ name: exported.name, symbol });
      }
      ctx.exported.set(name, new Set(symbols.map((s) => s.name)));
      for (const { name: alias, symbol } of symbols) {
        if (symbol.flags & SymbolFlags.TypeAlias)
          ctx.aliases.set((await ctx.checker.getDeclaredTypeOfSymbol(symbol)).id, `import("${name}").${alias}`);
      }
      modules.push({ name, symbols });
    }
    const blocks: string[] = [];
    for (const { name, symbols } of modules) {
      const body = [];
      for (const { name: exportName, symbol } of symbols) body.push(await declaration(ctx, exportName, symbol, "export "));
      blocks.push(`declare module "${name}" {\n${indent(body.join("\n\n"))}\n}`);
    }
    // Internal types found while printing; printing them can find more.
    const internal: string[] = [];
    for (let done = 0; done < ctx.internal.size; done++) {
      const [key, entry] = [...ctx.internal.entries()][done]!;
      const symbol = await internalSymbol(ctx, project, entry.file, entry.name);
      internal.push(symbol ? await declaration(ctx, key, symbol, "export ") : `export type ${key} = any;`);
    }
    internal.push(
      "/** A zod schema, as far as a config or plugin uses one. */",
      "export interface Schema<Output> {\n  parse(data: unknown): Output;\n  safeParse(data: unknown): { success: true; data: Output } | { success: false; error: Error };\n}",
    );
    blocks.push(`declare module "${internalModule}" {\n${indent(internal.join("\n\n"))}\n}`);
    return `${header}\n${blocks.join("\n\n")}\n`;
  } finally {
    await api.close();
    rmSync(probeDir, { recursive: true, force: true });
  }
}

const header = `// agent-attr-env.d.ts — editor types for configs and plugins run by the agent-attr binary.
// GENERATED from agent-attr's sources (bun run types); do not edit. \`agent-attr types\` writes it
// beside your config; the config refers to it with a triple-slash reference (agent-attr init adds it).
`;

const indent = (text: string) =>
  text
    .split("\n")
    .map((line) => (line ? `  ${line}` : line))
    .join("\n");

async function internalSymbol(ctx: Context, project: Project, file: string, name: string) {
  const source = await project.program.getSourceFile(file);
  if (!source) return null;
  const moduleSymbol = await ctx.checker.getSymbolAtLocation(source);
  if (!moduleSymbol) return null;
  const found = (await ctx.checker.getExportsOfModule(moduleSymbol)).find((s) => s.name === name);
  if (!found) return null;
  return found.flags & SymbolFlags.Alias ? ctx.checker.getAliasedSymbol(found) : found;
}

/** `/** … *\/` for a symbol's documentation, or nothing. */
async function docs(ctx: Context, symbol: TsSymbol): Promise<string> {
  const text = (await ctx.checker.getDocumentationCommentOfSymbol(symbol)).trim();
  if (!text) return "";
  const lines = text.split("\n");
  return lines.length === 1 ? `/** ${lines[0]} */\n` : `/**\n${lines.map((line) => ` * ${line}`.trimEnd()).join("\n")}\n */\n`;
}

async function declaration(ctx: Context, name: string, symbol: TsSymbol, exported: string): Promise<string> {
  const doc = await docs(ctx, symbol);
  const { checker } = ctx;
  if (symbol.flags & SymbolFlags.Class) return doc + (await classDeclaration(ctx, name, symbol, exported));
  if (symbol.flags & SymbolFlags.Interface) {
    const type = await checker.getDeclaredTypeOfSymbol(symbol);
    return `${doc}${exported}interface ${name} ${await objectBody(ctx, type)}`;
  }
  if (symbol.flags & SymbolFlags.TypeAlias) {
    // No public alias is generic; one that became so would fail the type check of this file's test.
    const type = await checker.getDeclaredTypeOfSymbol(symbol);
    const body = (await isPlainObject(ctx, type)) ? await objectBody(ctx, type) : await typeText(ctx, type, inTypeAlias, false);
    return `${doc}${exported}type ${name} = ${body};`;
  }
  const type = (await checker.getTypeOfSymbol(symbol))!;
  if (symbol.flags & SymbolFlags.Function) {
    const signatures = await checker.getSignaturesOfType(type, SignatureKind.Call);
    const lines = [];
    for (const signature of signatures) lines.push(`${exported}function ${name}${await signatureText(ctx, signature)};`);
    return doc + lines.join("\n");
  }
  const printed = await checker.typeToString(type, ctx.probe, noTruncation);
  if (/\bimport\("zod"\)/.test(printed))
    return `${doc}${exported}const ${name}: import("${internalModule}").Schema<${await schemaOutput(ctx, type)}>;`;
  return `${doc}${exported}const ${name}: ${await typeText(ctx, type)};`;
}

/** The output type of a zod schema: what its `parse` returns. */
async function schemaOutput(ctx: Context, schema: Type): Promise<string> {
  const parse = await ctx.checker.getPropertyOfType(schema, "parse");
  const signature = parse && (await ctx.checker.getSignaturesOfType((await ctx.checker.getTypeOfSymbol(parse))!, SignatureKind.Call))[0];
  const output = signature && (await ctx.checker.getReturnTypeOfSignature(signature));
  return output ? typeText(ctx, output, inTypeAlias) : "unknown";
}

/** `<T>(a: A, b?: B): R`, with every type expanded. */
async function signatureText(ctx: Context, signature: Signature): Promise<string> {
  const { checker } = ctx;
  const typeParams = await signature.getTypeParameters();
  const generics = [];
  for (const param of typeParams) {
    const constraint = await checker.getConstraintOfTypeParameter(param);
    generics.push(
      `${await checker.typeToString(param, ctx.probe, noTruncation)}${constraint ? ` extends ${await typeText(ctx, constraint)}` : ""}`,
    );
  }
  const params = [];
  const symbols = await signature.getParameters();
  for (const [i, param] of symbols.entries()) {
    const type = await checker.getTypeOfSymbol(param);
    const rest = signature.hasRestParameter && i === symbols.length - 1;
    const optional = !rest && (await isOptionalParameter(param));
    let text = type ? await typeText(ctx, type) : "unknown";
    if (optional) text = text.replace(/ \| undefined$/, "");
    const paramName = /^[A-Za-z_$][\w$]*$/.test(param.name) ? param.name : `arg${i}`;
    params.push(`${rest ? "..." : ""}${paramName}${optional ? "?" : ""}: ${text}`);
  }
  const returns = await checker.getReturnTypeOfSignature(signature);
  const predicate = await checker.getTypePredicateOfSignature(signature);
  const returnText =
    predicate?.type && "parameterName" in predicate && predicate.parameterName
      ? `${predicate.parameterName} is ${await typeText(ctx, predicate.type)}`
      : returns
        ? await typeText(ctx, returns)
        : "void";
  return `${generics.length ? `<${generics.join(", ")}>` : ""}(${params.join(", ")}): ${returnText}`;
}

/** Whether a parameter may be left out: `name?` or a default value in its declaration. */
async function isOptionalParameter(param: TsSymbol): Promise<boolean> {
  const text = (await declarationText(param)).replace(/^(?:(?:readonly|public|private|protected|override)\s+)+/, "");
  if (/^[\w$]+\s*\?/.test(text)) return true;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if ("([{<".includes(c)) depth++;
    else if (")]}".includes(c) || (c === ">" && text[i - 1] !== "=")) depth--;
    else if (c === "=" && depth === 0 && text[i + 1] !== ">" && !"=!<>".includes(text[i - 1] ?? "")) return true;
  }
  return false;
}

async function classDeclaration(ctx: Context, name: string, symbol: TsSymbol, exported: string): Promise<string> {
  const { checker } = ctx;
  const instance = await checker.getDeclaredTypeOfSymbol(symbol);
  const statics = (await checker.getTypeOfSymbol(symbol))!;
  const bases = await checker.getBaseTypes(instance as never).catch(() => []);
  const base = bases[0] ? ` extends ${await typeText(ctx, bases[0])}` : "";
  const members: string[] = [];
  for (const signature of await checker.getSignaturesOfType(statics, SignatureKind.Construct)) {
    members.push(`constructor${(await signatureText(ctx, signature)).replace(/: [^:]*$/, "").replace(/\): .*$/s, ")")};`);
  }
  // Own members only: what a base class (Error) declares comes with `extends`.
  for (const property of await checker.getPropertiesOfType(statics)) {
    if (property.name !== "prototype" && isOurs(property) && !(await isPrivate(property)))
      members.push(await member(ctx, property, "static "));
  }
  for (const property of await checker.getPropertiesOfType(instance)) {
    if (isOurs(property) && !(await isPrivate(property))) members.push(await member(ctx, property));
  }
  return `${exported}class ${name}${base} {\n${indent(members.join("\n"))}\n}`;
}

/** The members of an interface or object type, each with its documentation. */
async function objectBody(ctx: Context, type: Type): Promise<string> {
  const members: string[] = [];
  for (const signature of await ctx.checker.getSignaturesOfType(type, SignatureKind.Call))
    members.push(`${await signatureText(ctx, signature)};`);
  for (const info of await ctx.checker.getIndexInfosOfType(type)) {
    members.push(
      `${info.isReadonly ? "readonly " : ""}[key: ${await typeText(ctx, info.keyType)}]: ${await typeText(ctx, info.valueType)};`,
    );
  }
  for (const property of await ctx.checker.getPropertiesOfType(type)) members.push(await member(ctx, property));
  return members.length === 0 ? "{}" : `{\n${indent(members.join("\n"))}\n}`;
}

/** `private` / `protected` / `#name` members are not part of what a user can touch. */
async function isPrivate(symbol: TsSymbol): Promise<boolean> {
  return symbol.name.startsWith("#") || /^(?:(?:static|readonly|override)\s+)*(?:private|protected)\b/.test(await declarationText(symbol));
}

/** Declared in this repository's sources (not by a base class from a library). */
function isOurs(symbol: TsSymbol): boolean {
  const file = String(symbol.declarations[0]?.path ?? "");
  return file.startsWith(`${root}/`) && !file.includes("/node_modules/");
}

async function member(ctx: Context, property: TsSymbol, modifier = ""): Promise<string> {
  const { checker } = ctx;
  const doc = await docs(ctx, property);
  const optional = (property.flags & SymbolFlags.Optional) !== 0;
  const key = /^[A-Za-z_$][\w$]*$/.test(property.name) ? property.name : JSON.stringify(property.name);
  const readonly = (await declarationText(property)).startsWith("readonly ") ? "readonly " : "";
  const type = (await checker.getTypeOfSymbol(property))!;
  if (property.flags & SymbolFlags.Method) {
    const target = optional ? ((await checker.getNonNullableType(type)) ?? type) : type;
    const signatures = await checker.getSignaturesOfType(target, SignatureKind.Call);
    const lines = [];
    for (const signature of signatures) lines.push(`${modifier}${key}${optional ? "?" : ""}${await signatureText(ctx, signature)};`);
    return doc + lines.join("\n");
  }
  let text = await typeText(ctx, type);
  if (optional) text = text.replace(/ \| undefined$/, "");
  return `${doc}${modifier}${readonly}${key}${optional ? "?" : ""}: ${text};`;
}

/** The source text of a symbol's first declaration (to see `readonly`), without its comments. */
async function declarationText(symbol: TsSymbol): Promise<string> {
  const node = await symbol.declarations[0]?.resolve();
  return node
    ? node
        .getText()
        .replace(/\/\*[\s\S]*?\*\//g, "")
        .replace(/\/\/.*$/gm, "")
        .trim()
    : "";
}

/**
 * A type as the checker prints it, names mapped to the modules users import: public names stay
 * `import("agent-attr").X`; our other types become `import("agent-attr/internal").X` (and are
 * declared there); other packages' types become `any`.
 */
async function typeText(ctx: Context, type: Type, flags = 0, byAlias = true): Promise<string> {
  if (byAlias && ctx.aliases.has(type.id)) return ctx.aliases.get(type.id)!;
  // Object types written out member by member keep their documentation (editors show it).
  if (await isPlainObject(ctx, type)) return objectBody(ctx, type);
  const nonNull = await nonNullPart(ctx, type);
  if (nonNull) return `${await typeText(ctx, nonNull.type, flags, byAlias)}${nonNull.rest}`;
  const named = await ctx.checker.typeToString(type, ctx.probe, noTruncation | flags);
  // A name from zod (`z.input<typeof optionsSchema>`) or another of our files' values is what
  // users cannot import: print its structure instead.
  const printed = /import\("zod[^"]*"\)|typeof import\(/.test(named)
    ? await ctx.checker.typeToString(type, ctx.probe, noTruncation | inTypeAlias)
    : named;
  return mapNames(ctx, printed);
}

/** An anonymous object type with properties only (a config section, a plugin's options). */
async function isPlainObject(ctx: Context, type: Type): Promise<boolean> {
  if (!(type.flags & TypeFlags.Object) || !type.isObjectType()) return false;
  if (!(type.objectFlags & (ObjectFlags.Anonymous | ObjectFlags.Mapped)) || type.objectFlags & ObjectFlags.Reference) return false;
  const { checker } = ctx;
  if ((await checker.getSignaturesOfType(type, SignatureKind.Call)).length > 0) return false;
  if ((await checker.getSignaturesOfType(type, SignatureKind.Construct)).length > 0) return false;
  if (await checker.isArrayLikeType(type)) return false;
  const properties = await checker.getPropertiesOfType(type);
  return properties.length > 0 && properties.every((p) => !(p.flags & SymbolFlags.Method));
}

/** `T | undefined` / `T | null` with T a plain object: T and the rest, so T is written out. */
async function nonNullPart(ctx: Context, type: Type): Promise<{ type: Type; rest: string } | null> {
  if (!type.isUnionType()) return null;
  const members = (await type.getTypes()) ?? [];
  const objects: Type[] = [];
  for (const member of members) if (await isPlainObject(ctx, member)) objects.push(member);
  if (objects.length !== 1) return null;
  const rest = members
    .filter((m) => m !== objects[0])
    .map((m) => (m.flags & TypeFlags.Undefined ? "undefined" : m.flags & TypeFlags.Null ? "null" : null));
  if (rest.some((r) => r === null)) return null;
  return { type: objects[0]!, rest: rest.map((r) => ` | ${r}`).join("") };
}

function mapNames(ctx: Context, printed: string): string {
  // `typeof import("…").x` names a value's type: only internal ones appear (zod schemas), printed as any.
  let text = printed.replace(/typeof import\("([^"]+)"\)\.[\w$.]+/g, "any");
  text = text.replace(
    /import\("([^"]+)"\)\.([\w$]+)((?:\.[\w$]+)*)(<)?/g,
    (_whole, specifier: string, name: string, rest: string, generic: string | undefined) => {
      if (ctx.exported.has(specifier))
        return ctx.exported.get(specifier)!.has(name)
          ? `import("${specifier}").${name}${rest}${generic ?? ""}`
          : `any${generic ? "<" : ""}`;
      const file = ourFile(ctx, specifier);
      if (!file || rest) return generic ? "Generic<" : "any";
      const key = internalName(ctx, file, name);
      return `import("${internalModule}").${key}${generic ?? ""}`;
    },
  );
  // A generic type of another package: drop its arguments with it.
  text = dropGenericArguments(text, "Generic<");
  return text.replace(/\bBun\.[\w$.]+/g, "any").replace(/\bNodeJS\.[\w$.]+/g, "any");
}

/** The source file an `import("…")` specifier (relative to the probe, no extension) names, if ours. */
function ourFile(ctx: Context, specifier: string): string | null {
  if (!specifier.startsWith(".") && !specifier.startsWith("/")) return null;
  const base = resolve(ctx.probeDir, specifier);
  if (!base.startsWith(`${root}/`) || base.includes("/node_modules/")) return null;
  for (const candidate of [`${base}.ts`, join(base, "index.ts"), base]) {
    try {
      readFileSync(candidate);
      return candidate;
    } catch {
      // try the next form
    }
  }
  return null;
}

function internalName(ctx: Context, file: string, name: string): string {
  for (const [key, entry] of ctx.internal) if (entry.file === file && entry.name === name) return key;
  let key = name;
  for (let n = 2; ctx.internal.has(key); n++) key = `${name}${n}`;
  ctx.internal.set(key, { file, name, text: null });
  return key;
}

/** `Generic<A, B<C>>` → `any` (the marker and its balanced arguments). */
function dropGenericArguments(text: string, marker: string): string {
  for (let at = text.indexOf(marker); at !== -1; at = text.indexOf(marker)) {
    let depth = 0;
    let end = at + marker.length - 1;
    for (; end < text.length; end++) {
      if (text[end] === "<") depth++;
      else if (text[end] === ">" && text[end - 1] !== "=" && --depth === 0) break;
    }
    text = `${text.slice(0, at)}any${text.slice(end + 1)}`;
  }
  return text;
}

if (import.meta.main) {
  const text = await generateDeclarations();
  if (process.argv.includes("--check")) {
    const current = readFileSync(declarationFile, "utf8");
    if (current !== text) {
      process.stderr.write(`${declarationFile} is out of date: run 'bun run types'.\n`);
      process.exit(1);
    }
  } else {
    writeFileSync(declarationFile, text);
    process.stdout.write(`wrote ${declarationFile} (${text.length} bytes)\n`);
  }
}
