/** Numbers, money and times as the pages show them (money from exact nano-dollars). */
const integer = new Intl.NumberFormat("en-US");

export const count = (n: number | null | undefined) => (n === null || n === undefined ? "—" : integer.format(n));

/** Dollars from nano-dollars: cents for large sums, more digits for small ones. */
export function usd(nano: number | null | undefined): string {
  if (nano === null || nano === undefined) return "unpriced";
  const dollars = nano / 1e9;
  const digits = dollars !== 0 && Math.abs(dollars) < 1 ? 6 : 2;
  return `$${dollars.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: digits })}`;
}

export const time = (iso: string | null | undefined) => (iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—");

export function ago(iso: string, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 90) return `${seconds} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 129_600) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86_400)} days ago`;
}

/** The time ranges the pages offer, as `days` for the API. */
export const ranges = [
  { label: "Last 24 hours", days: 1 },
  { label: "Last 7 days", days: 7 },
  { label: "Last 30 days", days: 30 },
  { label: "Last 90 days", days: 90 },
  { label: "Last 365 days", days: 365 },
] as const;
