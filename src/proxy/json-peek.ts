/**
 * Reading one member out of the edges of a JSON text too large to parse whole: the value of the
 * last `"key":` object in a tail of the text, or the first string value of `"key":` in its head.
 * Used to meter non-streamed answers over the buffering cap, whose usage sits at their end and
 * whose model at their start.
 */

/** The object value of the last `"key":` in `text` (whitespace allowed around the colon), or null. */
export function lastObjectMember(text: string, key: string): Record<string, unknown> | null {
  const pattern = new RegExp(`"${key}"\\s*:\\s*\\{`, "g");
  let start = -1;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) start = match.index + match[0].length - 1;
  if (start < 0) return null;
  const end = matchingBrace(text, start);
  if (end < 0) return null;
  try {
    const value = JSON.parse(text.slice(start, end + 1)) as unknown;
    return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The string value of the first `"key":` in `text`, or null. */
export function firstStringMember(text: string, key: string): string | null {
  const match = new RegExp(`"${key}"\\s*:\\s*("(?:[^"\\\\]|\\\\.)*")`).exec(text);
  if (!match) return null;
  try {
    return JSON.parse(match[1]!) as string;
  } catch {
    return null;
  }
}

/** Index of the `}` closing the `{` at `open`, skipping strings; -1 when the text ends first. */
function matchingBrace(text: string, open: number): number {
  let depth = 0;
  let inString = false;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) return i;
  }
  return -1;
}
