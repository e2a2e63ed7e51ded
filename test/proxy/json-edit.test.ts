// Edits spliced into a JSON body's own bytes: over many generated bodies (repeated names, escaped
// names, nested objects, strings full of quotes and braces, big numbers, odd spacing, a BOM) the
// result is exactly the body with the edit's text in its documented place, and parses to the
// intended object.
import { expect, test } from "bun:test";
import { applyBodyEdits, type BodyEdit } from "../../src/proxy/json-edit.ts";

// A body as a tree that remembers its own text, so the expected edit is built from the tree
// (independently of the byte scanner under test).
type Node = { kind: "raw"; text: string } | { kind: "object"; open: string; members: MemberNode[]; close: string };
interface MemberNode {
  before: string;
  keyText: string;
  key: string;
  afterKey: string;
  afterColon: string;
  value: Node;
  after: string;
}

const render = (node: Node): string =>
  node.kind === "raw"
    ? node.text
    : `{${node.open}${node.members.map((m) => `${m.before}${m.keyText}${m.afterKey}:${m.afterColon}${render(m.value)}${m.after}`).join(",")}${node.close}}`;

let seed = 12345;
const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

const spaces = ["", "", " ", "\n", "\t", "\r\n  "];
const names = ["model", "stream", "stream_options", "include_usage", "max_tokens", "seed", "x", 'a"b', "back\\slash", "{", "é", "💡"];
const scalars = [
  "9223372036854775807",
  "1.0",
  "-0",
  "1e400",
  "2.50E-3",
  "true",
  "false",
  "null",
  "0",
  '"plain"',
  '"\\"}{\\\\\\""',
  '"caf\\u00e9"',
  '"é 💡"',
  '"\\\\"',
  '"stream_options"',
  '"a,b:c"',
  "[]",
  '[1, {"stream_options": [2]}, "]"]',
  '[{"include_usage":false}]',
];

/** A name as JSON text: plain, or with one character written as a \u escape. */
function keyText(name: string): string {
  const plain = JSON.stringify(name);
  if (random() < 0.7 || name.length < 2) return plain;
  const i = Math.floor(random() * name.length);
  const code = name.charCodeAt(i);
  if (code >= 0xd800 && code <= 0xdfff) return plain;
  return `${JSON.stringify(name.slice(0, i)).slice(0, -1)}\\u${code.toString(16).padStart(4, "0")}${JSON.stringify(name.slice(i + 1)).slice(1)}`;
}

function objectNode(depth: number): Node {
  const count = Math.floor(random() * (depth === 0 ? 7 : 4));
  const members: MemberNode[] = [];
  for (let i = 0; i < count; i++) {
    const key = pick(names);
    members.push({
      before: pick(spaces),
      keyText: keyText(key),
      key,
      afterKey: pick(spaces),
      afterColon: pick(spaces),
      value: valueNode(depth + 1),
      after: pick(spaces),
    });
  }
  return { kind: "object", open: count === 0 ? pick(spaces) : "", members, close: "" };
}

function valueNode(depth: number): Node {
  return depth < 3 && random() < 0.35 ? objectNode(depth) : { kind: "raw", text: pick(scalars) };
}

/** The documented edit, made on the tree. */
function expectedEdit(node: Node & { kind: "object" }, path: readonly string[], valueText: string): Node {
  const [name, ...rest] = path as [string, ...string[]];
  const nested = (p: readonly string[]) => p.reduceRight((inner, n) => `{${JSON.stringify(n)}:${inner}}`, valueText);
  const matches = node.members.filter((m) => m.key === name);
  if (matches.length === 0) {
    const inserted = `${JSON.stringify(name)}:${rest.length ? nested(rest) : valueText}${node.members.length ? "," : ""}`;
    return { ...node, open: inserted + node.open };
  }
  return {
    ...node,
    members: node.members.map((m) => {
      if (m.key !== name) return m;
      if (rest.length === 0) return { ...m, value: { kind: "raw", text: valueText } };
      if (m.value.kind === "object") return { ...m, value: expectedEdit(m.value, rest, valueText) };
      if (m.value.text === "null") return { ...m, value: { kind: "raw", text: nested(rest) } };
      return m;
    }),
  };
}

/** What JSON.parse of the edited body must give: the edit made on the parsed original. */
function intended(object: Record<string, unknown>, path: readonly string[], value: unknown): Record<string, unknown> {
  const [name, ...rest] = path as [string, ...string[]];
  const copy = { ...object };
  if (rest.length === 0) copy[name] = value;
  else if (!Object.hasOwn(object, name) || object[name] === null) copy[name] = intended({}, rest, value);
  else if (typeof object[name] === "object" && !Array.isArray(object[name]))
    copy[name] = intended(object[name] as Record<string, unknown>, rest, value);
  return copy;
}

const edits: BodyEdit[] = [
  { path: ["stream_options", "include_usage"], value: true },
  { path: ["max_tokens"], value: 4096 },
  { path: ["x", "stream_options", "include_usage"], value: { deep: 1.5, s: 'é"}' } },
  { path: ["é"], value: null },
];
const encoder = new TextEncoder();
const decoder = new TextDecoder();

test("over 3,000 generated bodies, the edit is spliced into the original bytes and parses to the intended object", () => {
  let inserted = 0;
  let replaced = 0;
  for (let i = 0; i < 3000; i++) {
    const tree = objectNode(0) as Node & { kind: "object" };
    const bom = random() < 0.05 ? "\ufeff" : "";
    const lead = pick(spaces);
    const text = bom + lead + render(tree) + pick(spaces);
    const edit = pick(edits);
    const parsed = JSON.parse(text.slice(bom.length)) as Record<string, unknown>;
    const result = decoder.decode(applyBodyEdits(encoder.encode(text), parsed, [edit]), { stream: false });
    const expected =
      (bom ? "\ufeff" : "") +
      lead +
      render(expectedEdit(tree, edit.path, JSON.stringify(edit.value))) +
      text.slice(bom.length + lead.length + render(tree).length);
    // TextDecoder drops a BOM; compare what follows it.
    expect(bom + result).toBe(expected);
    expect(JSON.parse(result)).toEqual(intended(parsed, edit.path, edit.value));
    if (tree.members.some((m) => m.key === edit.path[0])) replaced++;
    else inserted++;
  }
  // Both branches were exercised, many times.
  expect(inserted).toBeGreaterThan(500);
  expect(replaced).toBeGreaterThan(500);
});

test("edits apply in order, each on the bytes the one before made", () => {
  const raw = '{"model":"m","stream_options":null,"n":1.0}';
  const both = applyBodyEdits(encoder.encode(raw), JSON.parse(raw), [
    { path: ["stream_options", "include_usage"], value: true },
    { path: ["max_tokens"], value: 7 },
  ]);
  expect(decoder.decode(both)).toBe('{"max_tokens":7,"model":"m","stream_options":{"include_usage":true},"n":1.0}');
});

test("a repeated name is edited in every occurrence, so first-wins and last-wins parsers agree", () => {
  const raw = '{"stream_options":{"include_usage":false},"stream_options":{"x":1}}';
  const out = decoder.decode(
    applyBodyEdits(encoder.encode(raw), JSON.parse(raw), [{ path: ["stream_options", "include_usage"], value: true }]),
  );
  expect(out).toBe('{"stream_options":{"include_usage":true},"stream_options":{"include_usage":true,"x":1}}');
});

test("a name on the path that is not an object is left for the upstream to refuse", () => {
  const raw = '{"stream_options":"yes","model":"m"}';
  const out = decoder.decode(
    applyBodyEdits(encoder.encode(raw), JSON.parse(raw), [{ path: ["stream_options", "include_usage"], value: true }]),
  );
  expect(out).toBe(raw);
});
