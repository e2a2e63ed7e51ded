/**
 * The identifier policy: how an agent, user, session or parent-agent id (and a task's text) is
 * read, wherever it comes from — a header, the request body, a token claim, a key — so that one
 * person has one id in the trail and an erasure of that id finds every record.
 *
 * - Header values are UTF-8. Bun hands a header over one char per byte (Latin-1); `headerText`
 *   turns it back into the bytes and decodes them, refusing bytes that are not UTF-8.
 * - Surrounding white space is removed and ids are stored in Unicode NFC, so the composed and the
 *   decomposed spelling of `José` are one id.
 * - Refused (400 `invalid_attribution`, naming where and the code point): in ids, controls (C0,
 *   C1), invisible characters (Unicode format characters and default-ignorable code points: zero
 *   width spaces and joiners, U+2060, U+FEFF, soft hyphen, variation selectors, …), bidi controls,
 *   line and paragraph separators, spaces other than U+0020 and lone surrogates; from a header
 *   also a comma, since repeated header lines reach the proxy joined with ", " (RFC 9110 §5.3) and
 *   cannot be told from one. In task text (free text): controls, separators, lone surrogates and
 *   the bidi embedding, override and isolate controls; joiners and marks that scripts need stay.
 * - Case and compatibility forms (full-width letters, ligatures) are kept as sent: ids are exact.
 */
import { ProxyError } from "./errors.ts";

export interface IdentifierRule {
  /** What an error names: `Header x-user-id`, `The body field user`, `The token's sub claim`. */
  where: string;
  /** Longest accepted value (UTF-16 code units, after normalisation); never cut, refused. */
  max: number;
  /** Free text (task context) rather than an id. */
  text?: boolean;
  /** The value came from an HTTP header, where a comma may be two header lines joined. */
  header?: boolean;
}

const printableAscii = /^[\x20-\x7e]*$/;
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

const bidiControl = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;
const notInId = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]|(?! )\p{Zs}/u;
const notInText = /[\p{Cc}\p{Cs}\p{Zl}\p{Zp}\u202a-\u202e\u2066-\u2069]/u;

/**
 * A header's value as the text the client sent (UTF-8), or null when absent. Printable ASCII,
 * nearly every value, is returned as is.
 */
export function headerText(headers: Headers, name: string): string | null {
  const raw = headers.get(name);
  if (raw === null || printableAscii.test(raw)) return raw;
  try {
    return utf8.decode(Buffer.from(raw, "latin1"));
  } catch {
    throw new ProxyError(
      "invalid_attribution",
      `Header ${name} is not valid UTF-8. Send attribution headers as UTF-8 bytes (a JavaScript client's header values are byte strings: pass Buffer.from(value).toString("latin1")), or the user in the request body.`,
    );
  }
}

/**
 * An id (or task text) held to the policy: trimmed, NFC, refused with 400 if it breaks a rule.
 * Null when absent or blank.
 */
export function checkIdentifier(value: string | null | undefined, rule: IdentifierRule): string | null {
  const trimmed = value?.trim();
  if (!trimmed) return null;
  let id = trimmed;
  if (!printableAscii.test(trimmed)) {
    id = trimmed.normalize("NFC");
    const bad = (rule.text ? notInText : notInId).exec(id);
    if (bad) {
      const what = rule.text
        ? "task text may not contain controls, line separators or bidi overrides"
        : "identifiers may not contain control, invisible or bidi-control characters";
      throw new ProxyError(
        "invalid_attribution",
        `${rule.where} contains ${describeCharacter(bad[0])} at character ${[...id.slice(0, bad.index)].length + 1}: ${what}. Send it without that character.`,
      );
    }
  }
  if (id.length > rule.max) {
    throw new ProxyError(
      "invalid_attribution",
      `${rule.where} is longer than ${rule.max} characters; send a shorter one (an id is never cut short: its owner could not erase a cut one).`,
    );
  }
  if (rule.header && !rule.text && id.includes(",")) {
    throw new ProxyError(
      "invalid_attribution",
      `${rule.where} holds '${id}': the header was sent more than once (HTTP joins repeated header lines with commas), or its value has a comma, which an id sent as a header may not. Send the header once, with one id.`,
    );
  }
  return id;
}

/** The form an id is stored in, without the refusals: for lookups and comparisons. */
export function normalizeIdentifier(value: string): string {
  const trimmed = value.trim();
  return printableAscii.test(trimmed) ? trimmed : trimmed.normalize("NFC");
}

/**
 * Every form under which records may hold the id an erasure is given: as given and trimmed, in
 * NFC and NFD (records of older versions kept body ids as sent), and each as older versions stored
 * an id from a header — its UTF-8 bytes read as Latin-1 (`josé` as `josÃ©`).
 */
export function erasureForms(id: string): string[] {
  const forms = new Set<string>();
  for (const base of [id, id.trim()]) {
    for (const form of [base, base.normalize("NFC"), base.normalize("NFD")]) {
      forms.add(form);
      forms.add(Buffer.from(form, "utf8").toString("latin1"));
    }
  }
  return [...forms];
}

function describeCharacter(character: string): string {
  const code = character.codePointAt(0)!;
  const name = `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
  if (/\p{Cc}/u.test(character)) return `${name} (a control character)`;
  if (bidiControl.test(character)) return `${name} (a bidi control)`;
  if (/\p{Cs}/u.test(character)) return `${name} (a lone surrogate, not a character)`;
  if (/[\p{Zl}\p{Zp}]/u.test(character)) return `${name} (a line or paragraph separator)`;
  if (/\p{Zs}/u.test(character)) return `${name} (a space other than U+0020)`;
  return `${name} (an invisible character)`;
}
