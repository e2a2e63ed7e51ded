// The identifier policy: header bytes decoded as UTF-8, ids in NFC, invisible and control
// characters refused, and the forms an erasure looks for.
import { expect, test } from "bun:test";
import { checkIdentifier, erasureForms, headerText, normalizeIdentifier } from "../src/identifiers.ts";

/** A header as Bun hands it over: the bytes the client sent, one char per byte. */
const wire = (text: string) => new Headers({ "x-user-id": Buffer.from(text, "utf8").toString("latin1") });
const id = (value: string, rule: Partial<Parameters<typeof checkIdentifier>[1]> = {}) =>
  checkIdentifier(value, { where: "Header x-user-id", max: 256, ...rule });

test("header values are read as the UTF-8 bytes the client sent", () => {
  expect(headerText(wire("josé"), "x-user-id")).toBe("josé");
  expect(headerText(wire("李小龙"), "x-user-id")).toBe("李小龙");
  expect(headerText(wire("alice"), "x-user-id")).toBe("alice");
  expect(headerText(new Headers(), "x-user-id")).toBeNull();
});

test("a header that is not valid UTF-8 is refused, naming the header and how to send it", () => {
  // A JavaScript client that puts "josé" in a header sends the single byte 0xE9 (Latin-1).
  const latin1 = new Headers({ "x-user-id": "jos\u00e9" });
  expect(() => headerText(latin1, "x-user-id")).toThrow("Header x-user-id is not valid UTF-8");
  expect(() => headerText(new Headers({ "x-user-id": "\u00c3" }), "x-user-id")).toThrow(
    expect.objectContaining({ code: "invalid_attribution" }),
  );
});

test("a byte order mark is decoded like any character: around an id it is trimmed, inside it is refused", () => {
  expect(headerText(wire("\ufeffalice"), "x-user-id")).toBe("\ufeffalice");
  expect(id("\ufeffalice\u3000")).toBe("alice");
  expect(() => id("al\ufeffice")).toThrow("U+FEFF");
});

test("ids are trimmed and stored in NFC, so the composed and decomposed forms are one id", () => {
  expect(id("jose\u0301")).toBe("jos\u00e9");
  expect(id("  alice\t")).toBe("alice");
  expect(id("   ")).toBeNull();
  expect(id("")).toBeNull();
  expect(normalizeIdentifier(" jose\u0301 ")).toBe("jos\u00e9");
});

test("case and full-width forms are kept as sent: ids are exact", () => {
  expect(id("Alice")).toBe("Alice");
  expect(id("ａｌｉｃｅ")).toBe("ａｌｉｃｅ");
});

test("invisible, control and bidi characters in an id are refused, naming the code point", () => {
  const refused: [string, string][] = [
    ["alice\u200b", "U+200B"],
    ["al\u200dice", "U+200D"],
    ["alice\u2060", "U+2060"],
    ["al\ufeffice", "U+FEFF"],
    ["\u202eecila", "U+202E"],
    ["alice\u2066", "U+2066"],
    ["alice\u200e", "U+200E"],
    ["alice\u061c", "U+061C"],
    ["ali\u0000ce", "U+0000"],
    ["ali\rce", "U+000D"],
    ["ali\nce", "U+000A"],
    ["ali\u0085ce", "U+0085"],
    ["ali\u00adce", "U+00AD"],
    ["ali\u3164ce", "U+3164"],
    ["ali\u00a0ce", "U+00A0"],
    ["ali\u2028ce", "U+2028"],
    ["ali\ud800ce", "U+D800"],
  ];
  for (const [value, codePoint] of refused) {
    expect(() => id(value)).toThrow(`Header x-user-id contains ${codePoint}`);
  }
  expect(() => id("alice\u200b")).toThrow(expect.objectContaining({ code: "invalid_attribution", status: 400 }));
  expect(id("alice smith")).toBe("alice smith");
});

test("task text keeps what free text needs (joiners, marks) but refuses controls and bidi overrides", () => {
  const task = (value: string) => checkIdentifier(value, { where: "Header x-task-context", max: 2048, text: true });
  expect(task("PR review #456, part 2")).toBe("PR review #456, part 2");
  expect(task("می\u200cخواهم 👩\u200d💻")).toBe("می\u200cخواهم 👩\u200d💻");
  expect(() => task("PR\nFORGED")).toThrow("U+000A");
  expect(() => task("review \u202e654#")).toThrow("U+202E");
});

test("a comma in an id from a header is refused: repeated header lines arrive joined with commas", () => {
  expect(() => id("alice, bob", { header: true })).toThrow("more than once");
  expect(() => id("alice,bob", { header: true })).toThrow("Header x-user-id");
  // The body and tokens carry one value each: a comma there is part of the id.
  expect(id("Doe, John")).toBe("Doe, John");
});

test("an id longer than the limit is refused, never cut", () => {
  expect(() => id("a".repeat(257))).toThrow("longer than 256 characters");
  expect(id("é".repeat(256))).toHaveLength(256);
});

test("erasure forms: as given, NFC and NFD, and the Latin-1 misreading older versions stored", () => {
  expect(erasureForms("alice")).toEqual(["alice"]);
  const forms = erasureForms("jose\u0301");
  expect(forms).toContain("jos\u00e9");
  expect(forms).toContain("jose\u0301");
  expect(forms).toContain("jos\u00c3\u00a9"); // "josé" as UTF-8 bytes read one char per byte
  expect(forms).toContain(Buffer.from("jose\u0301", "utf8").toString("latin1"));
  expect(new Set(forms).size).toBe(forms.length);
  expect(erasureForms(" bob ")).toEqual([" bob ", "bob"]);
});
