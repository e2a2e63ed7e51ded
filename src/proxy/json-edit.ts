/**
 * Edits a JSON object body in its original bytes. Re-serialising parsed JSON changes what the
 * client sent (`9223372036854775807` becomes `9223372036854776000`, `1.0` becomes `1`, escapes and
 * spacing are lost), so the proxy instead splices each edit into the bytes it received: every byte
 * outside the inserted or replaced text reaches the upstream as the client sent it.
 *
 * An edit sets one member, named by its path of object members from the top level:
 * - a member that is absent is inserted right after its object's `{` (objects on the path that are
 *   absent, or `null`, are created);
 * - a member that is present has its value replaced, in every occurrence of a repeated name, so a
 *   parser that keeps the first of two equal names reads the edit as well as one that keeps the last;
 * - an occurrence on the path whose value is neither an object nor `null` is left as it is (the
 *   client's own mistake goes upstream, and the upstream answers it).
 */
export type JsonValue = string | number | boolean | null | JsonArray | JsonObject;
// Interfaces, not inline types: a recursive alias printed with import() types (the declarations
// generated for binary users) would be circular.
export interface JsonArray extends Array<JsonValue> {}
export interface JsonObject {
  [key: string]: JsonValue;
}

export interface BodyEdit {
  /** Member names from the top-level object down, e.g. `["stream_options", "include_usage"]`. */
  path: readonly [string, ...string[]];
  value: JsonValue;
}

interface Splice {
  at: number;
  /** Bytes of the original replaced (0 for an insertion). */
  remove: number;
  text: string;
}

interface Member {
  key: string;
  valueStart: number;
  valueEnd: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * `raw` with the edits applied, in order. `body` is `raw` parsed: a top-level member it does not
 * have is inserted without scanning the bytes (the usual case, and the only cheap one for a body
 * of many megabytes).
 */
export function applyBodyEdits(raw: Uint8Array, body: Record<string, unknown>, edits: readonly BodyEdit[]): Uint8Array {
  let bytes = raw;
  let parsed = body;
  for (const edit of edits) {
    const valueText = JSON.stringify(edit.value);
    if (valueText === undefined) throw new TypeError(`The edit of ${edit.path.join(".")} has a value JSON cannot represent.`);
    const open = skipSpace(bytes, startOf(bytes));
    if (bytes[open] !== 0x7b) throw new TypeError("The body is not a JSON object.");
    const splices: Splice[] = [];
    if (Object.hasOwn(parsed, edit.path[0])) editObject(bytes, open, edit.path, valueText, splices);
    else splices.push(insertion(bytes, open, edit.path, valueText));
    bytes = applySplices(bytes, splices);
    parsed = withPath(parsed, edit.path, edit.value);
  }
  return bytes;
}

/** `object` with the edit made as JSON.parse would see it in the edited bytes (the last of repeated names). */
export function withPath(object: Record<string, unknown>, path: readonly string[], value: unknown): Record<string, unknown> {
  const [name, ...rest] = path as [string, ...string[]];
  if (rest.length === 0) return { ...object, [name]: value };
  const inner = Object.hasOwn(object, name) ? object[name] : null;
  if (inner === null) return { ...object, [name]: withPath({}, rest, value) };
  if (typeof inner !== "object" || Array.isArray(inner)) return object;
  return { ...object, [name]: withPath(inner as Record<string, unknown>, rest, value) };
}

function editObject(bytes: Uint8Array, open: number, path: readonly string[], valueText: string, splices: Splice[]): void {
  const [name, ...rest] = path as [string, ...string[]];
  const matches = members(bytes, open).filter((member) => member.key === name);
  if (matches.length === 0) {
    splices.push(insertion(bytes, open, path, valueText));
    return;
  }
  for (const member of matches) {
    const first = bytes[member.valueStart];
    if (rest.length === 0) splices.push({ at: member.valueStart, remove: member.valueEnd - member.valueStart, text: valueText });
    else if (first === 0x7b) editObject(bytes, member.valueStart, rest, valueText, splices);
    else if (first === 0x6e) splices.push({ at: member.valueStart, remove: 4, text: nested(rest, valueText) }); // null
  }
}

/** `"name":value` (objects for the rest of the path around it) right after the `{` at `open`. */
function insertion(bytes: Uint8Array, open: number, path: readonly string[], valueText: string): Splice {
  const [name, ...rest] = path as [string, ...string[]];
  const empty = bytes[skipSpace(bytes, open + 1)] === 0x7d;
  const text = `${JSON.stringify(name)}:${rest.length ? nested(rest, valueText) : valueText}${empty ? "" : ","}`;
  return { at: open + 1, remove: 0, text };
}

function nested(path: readonly string[], valueText: string): string {
  return path.reduceRight((inner, name) => `{${JSON.stringify(name)}:${inner}}`, valueText);
}

function applySplices(bytes: Uint8Array, splices: Splice[]): Uint8Array {
  if (splices.length === 0) return bytes;
  splices.sort((a, b) => a.at - b.at);
  const parts: Uint8Array[] = [];
  let from = 0;
  for (const splice of splices) {
    parts.push(bytes.subarray(from, splice.at), encoder.encode(splice.text));
    from = splice.at + splice.remove;
  }
  parts.push(bytes.subarray(from));
  return Buffer.concat(parts);
}

/** The members of the object whose `{` is at `open`, with the span of each value. */
function members(bytes: Uint8Array, open: number): Member[] {
  const found: Member[] = [];
  let i = skipSpace(bytes, open + 1);
  if (bytes[i] === 0x7d) return found;
  for (;;) {
    const keyEnd = skipString(bytes, i);
    const key = keyOf(bytes, i, keyEnd);
    const valueStart = skipSpace(bytes, skipSpace(bytes, keyEnd) + 1); // past the ':'
    const valueEnd = skipValue(bytes, valueStart);
    found.push({ key, valueStart, valueEnd });
    i = skipSpace(bytes, valueEnd);
    if (bytes[i] !== 0x2c) return found; // '}'
    i = skipSpace(bytes, i + 1);
  }
}

function keyOf(bytes: Uint8Array, start: number, end: number): string {
  const raw = bytes.subarray(start, end);
  // Escapes (`"stream\u005foptions"`) name the same member as their plain form does.
  return raw.includes(0x5c) ? (JSON.parse(decoder.decode(raw)) as string) : decoder.decode(raw.subarray(1, -1));
}

/** Index just past the string whose opening quote is at `start`. */
function skipString(bytes: Uint8Array, start: number): number {
  let i = start + 1;
  for (;;) {
    const quote = bytes.indexOf(0x22, i);
    if (quote === -1) throw new TypeError("Unterminated string in the JSON body.");
    let backslashes = 0;
    while (bytes[quote - 1 - backslashes] === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return quote + 1;
    i = quote + 1;
  }
}

/** Index just past the value starting at `start` (the body has already parsed as JSON). */
function skipValue(bytes: Uint8Array, start: number): number {
  const first = bytes[start];
  if (first === 0x22) return skipString(bytes, start);
  if (first === 0x7b || first === 0x5b) {
    let depth = 0;
    for (let i = start; i < bytes.length; i++) {
      const c = bytes[i];
      if (c === 0x22) i = skipString(bytes, i) - 1;
      else if (c === 0x7b || c === 0x5b) depth++;
      else if ((c === 0x7d || c === 0x5d) && --depth === 0) return i + 1;
    }
    throw new TypeError("Unterminated object or array in the JSON body.");
  }
  let i = start;
  while (i < bytes.length && !isDelimiter(bytes[i]!)) i++;
  return i;
}

const isSpace = (c: number | undefined) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const isDelimiter = (c: number) => c === 0x2c || c === 0x7d || c === 0x5d || isSpace(c);

function skipSpace(bytes: Uint8Array, i: number): number {
  while (isSpace(bytes[i])) i++;
  return i;
}

/** Past a UTF-8 byte order mark, which the JSON decoder ignored. */
function startOf(bytes: Uint8Array): number {
  return bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
}
