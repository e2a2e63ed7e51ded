/** Narrowing helpers for untrusted JSON (request bodies, upstream responses, SSE data). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function asObject(value: unknown): Record<string, unknown> | null {
  return isObject(value) ? value : null;
}

/** A non-negative integer token count, or null. */
export function asCount(value: unknown): number | null {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : null;
}

export function asString(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}
