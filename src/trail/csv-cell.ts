/** One CSV cell, formula-safe: shared by the exports (./format.ts) and the dashboard's CSV downloads (no imports: it is bundled for the browser too). */

/**
 * One CSV cell. Text that a spreadsheet would run as a formula (leading `=`, `+`, `-`, `@`, tab,
 * CR) is prefixed with `'`; numbers stay numbers.
 */
export function csvCell(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return plainNumber(value);
  if (typeof value === "boolean") return String(value);
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** A number without exponent notation (a cost of 3.15e-7 USD is written 0.000000315). */
export function plainNumber(value: number): string {
  const text = String(value);
  if (!/e/i.test(text) || !Number.isFinite(value)) return text;
  return value.toFixed(20).replace(/\.?0+$/, "");
}
