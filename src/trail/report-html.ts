/**
 * The report (./report.ts) as one self-contained HTML file: inline CSS and SVG charts, no script,
 * no font, no request to anywhere (its Content-Security-Policy forbids loading anything), so it
 * opens the same offline, in a mail attachment or an archive in ten years. Every value from the
 * trail is HTML-escaped. The CLI signs the exact bytes (Ed25519, the trail's signing key).
 */
import type { SummaryRow } from "../store/results.ts";
import type { ChainEventEntry } from "./events.ts";
import type { Report } from "./report.ts";

const escapes: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export const escapeHTML = (value: unknown): string => String(value).replace(/[&<>"']/g, (c) => escapes[c]!);

const number = (n: number) => n.toLocaleString("en-US");
const usd = (row: SummaryRow) => `$${row.cost_usd.toFixed(4)}${row.unpriced_calls > 0 ? ` (+${row.unpriced_calls} unpriced)` : ""}`;

const style = `
:root { color-scheme: light; --ink: #1d2330; --muted: #5b6475; --line: #dde1e8; --bar: #3563c9; --warn: #b3261e; --ok: #1b7f3b; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); margin: 0 auto; max-width: 980px; padding: 32px 24px 64px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 36px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.meta, .note { color: var(--muted); } .note { font-size: 12px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; margin: 20px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px; } .card b { display: block; font-size: 22px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; } th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); } td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: var(--ok); font-weight: 600; } .bad { color: var(--warn); font-weight: 600; }
svg { display: block; max-width: 100%; height: auto; } svg text { font: 12px system-ui, sans-serif; fill: var(--ink); }
pre { background: #f5f6f8; padding: 10px; overflow-x: auto; font-size: 12px; }
@media print { body { padding: 0; } h2 { break-after: avoid; } }
`;

/** Horizontal bars, one per group (at most `max`; the rest summed as "others"). */
export function barChart(rows: readonly { label: string; value: number }[], title: string, max = 12): string {
  const shown = rows.slice(0, max);
  const rest = rows.slice(max).reduce((n, row) => n + row.value, 0);
  if (rest > 0) shown.push({ label: `${rows.length - max} others`, value: rest });
  if (shown.length === 0) return `<p class="note">No calls in this period.</p>`;
  const top = Math.max(...shown.map((row) => row.value), 1);
  const rowHeight = 24;
  const labelWidth = 220;
  const width = 760;
  const bars = shown
    .map((row, i) => {
      const y = i * rowHeight;
      const w = Math.max(1, Math.round(((width - labelWidth - 70) * row.value) / top));
      const label = row.label.length > 32 ? `${row.label.slice(0, 31)}…` : row.label;
      return `<g class="bar"><text x="${labelWidth - 8}" y="${y + 16}" text-anchor="end">${escapeHTML(label)}</text><rect x="${labelWidth}" y="${y + 4}" width="${w}" height="${rowHeight - 8}" fill="var(--bar)" rx="2"><title>${escapeHTML(row.label)}: ${number(row.value)}</title></rect><text x="${labelWidth + w + 6}" y="${y + 16}">${number(row.value)}</text></g>`;
    })
    .join("");
  return `<svg role="img" aria-label="${escapeHTML(title)}" viewBox="0 0 ${width} ${shown.length * rowHeight}" width="${width}">${bars}</svg>`;
}

/** Every UTC day from `since` to `until` (at most 400; a longer period shows only days with calls). */
function periodDays(since: string, until: string): string[] | null {
  const days: string[] = [];
  for (let t = Date.parse(`${since.slice(0, 10)}T00:00:00.000Z`); t <= Date.parse(until); t += 86_400_000) {
    days.push(new Date(t).toISOString().slice(0, 10));
    if (days.length > 400) return null;
  }
  return days;
}

/** Calls per day as columns, in time order, days without calls included. */
export function dayChart(withCalls: readonly SummaryRow[], since: string, until: string): string {
  if (withCalls.length === 0) return `<p class="note">No calls in this period.</p>`;
  const byDay = new Map(withCalls.map((row) => [row.key, row]));
  const empty = (key: string): SummaryRow => ({ ...withCalls[0]!, key, calls: 0 });
  const days = periodDays(since, until)?.map((day) => byDay.get(day) ?? empty(day)) ?? withCalls;
  const width = 760;
  const height = 180;
  const top = Math.max(...days.map((d) => d.calls), 1);
  const step = (width - 40) / days.length;
  const columns = days
    .map((day, i) => {
      const h = day.calls === 0 ? 0 : Math.max(1, Math.round(((height - 40) * day.calls) / top));
      const x = 30 + i * step;
      return `<rect class="day" x="${x.toFixed(1)}" y="${height - 20 - h}" width="${Math.max(1, step - 2).toFixed(1)}" height="${h}" fill="var(--bar)"><title>${escapeHTML(day.key)}: ${number(day.calls)} calls</title></rect>`;
    })
    .join("");
  const first = escapeHTML(days[0]!.key);
  const last = escapeHTML(days.at(-1)!.key);
  return `<svg role="img" aria-label="Calls per day" viewBox="0 0 ${width} ${height}" width="${width}"><text x="30" y="${height - 4}">${first}</text><text x="${width - 10}" y="${height - 4}" text-anchor="end">${last}</text><text x="0" y="14">${number(top)}</text>${columns}</svg>`;
}

function table(rows: readonly SummaryRow[], keyName: string, none: string): string {
  if (rows.length === 0) return "";
  const body = rows
    .map(
      (row) =>
        `<tr><td>${escapeHTML(row.key ?? none)}</td><td class="n">${number(row.calls)}</td><td class="n">${number(row.input_tokens)}</td><td class="n">${number(row.output_tokens)}</td><td class="n">${usd(row)}</td></tr>`,
    )
    .join("");
  return `<table><thead><tr><th>${escapeHTML(keyName)}</th><th class="n">Calls</th><th class="n">Input tokens</th><th class="n">Output tokens</th><th class="n">Cost</th></tr></thead><tbody>${body}</tbody></table>`;
}

const bars = (rows: readonly SummaryRow[], none: string, title: string) =>
  barChart(
    rows.map((row) => ({ label: row.key ?? none, value: row.calls })),
    title,
  );

function consentRows(events: readonly ChainEventEntry[], what: string): string {
  return events
    .map((e) => {
      const d = e.details;
      const agents = Array.isArray(d.agents) ? d.agents.join(", ") : "";
      return `<tr><td>${escapeHTML(e.timestamp)}</td><td>${escapeHTML(what)}</td><td><code>${escapeHTML(d.consent_id)}</code></td><td>${escapeHTML(d.purpose ?? "")}</td><td>${escapeHTML(d.lawful_basis ?? "")}</td><td>${escapeHTML(agents)}</td><td>${escapeHTML(e.actor)}</td></tr>`;
    })
    .join("");
}

export function renderReportHTML(report: Report): string {
  const { verify, status, totals, consents } = report;
  const integrity = verify.ok
    ? `<span class="ok">Intact</span>: ${number(verify.records)} records (${number(verify.redacted)} redacted), ${number(verify.events)} events, ${number(verify.checkpoints)} signed checkpoints checked; last seq ${verify.last_seq}.`
    : `<span class="bad">TAMPERED</span> at seq ${verify.failure?.seq} (${escapeHTML(verify.failure?.reason)}): ${escapeHTML(verify.failure?.message)}`;
  const checkpoint = status.last_checkpoint
    ? `seq ${status.last_checkpoint.seq}, ${escapeHTML(status.last_checkpoint.time)}, hash <code>${escapeHTML(status.last_checkpoint.hash)}</code>`
    : "none signed yet";
  const consentTable =
    consents.granted.length + consents.withdrawn.length + consents.expired.length === 0
      ? `<p class="note">No consent was granted, withdrawn or expired in this period.</p>`
      : `<table><thead><tr><th>When</th><th>What</th><th>Consent</th><th>Purpose</th><th>Basis</th><th>Agents</th><th>By</th></tr></thead><tbody>${consentRows(consents.granted, "granted")}${consentRows(consents.withdrawn, "withdrawn")}${consentRows(consents.expired, "expired")}</tbody></table>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>${escapeHTML(report.title)}: ${escapeHTML(report.since)} to ${escapeHTML(report.until)}</title>
<style>${style}</style>
</head>
<body>
<header>
<h1>${escapeHTML(report.title)}</h1>
<p class="meta">Period <b>${escapeHTML(report.since)}</b> to <b>${escapeHTML(report.until)}</b> · generated ${escapeHTML(report.generated_at)} by ${escapeHTML(report.generated_by)} · chain ${escapeHTML(status.chain_id ?? "(empty)")}</p>
</header>
<section class="cards" id="totals">
<div class="card">Calls<b>${number(totals.calls)}</b></div>
<div class="card">Refused<b>${number(report.refusals.total)}</b></div>
<div class="card">Consents granted<b>${number(consents.granted.length)}</b></div>
<div class="card">Consents withdrawn<b>${number(consents.withdrawn.length)}</b></div>
<div class="card">Cost<b>${escapeHTML(usd(totals))}</b></div>
</section>
<section id="integrity"><h2>Integrity of the trail</h2>
<p>Verify: ${integrity}</p>
<p>Last signed checkpoint: ${checkpoint}.</p>
</section>
<section id="calls-by-day"><h2>Calls per day</h2>${dayChart(report.by_day, report.since, report.until)}</section>
<section id="by-purpose"><h2>Calls by purpose</h2><p class="note">The purpose of the consent that covered each call (GDPR Art. 30(1)(b)); "(no consent)": none covered it.</p>${bars(report.by_purpose, "(no consent)", "Calls by purpose")}${table(report.by_purpose, "Purpose", "(no consent)")}</section>
<section id="by-basis"><h2>Calls by lawful basis</h2>${bars(report.by_basis, "(none)", "Calls by lawful basis")}${table(report.by_basis, "Lawful basis (GDPR Art. 6(1))", "(none)")}</section>
<section id="by-agent"><h2>Calls by agent</h2>${bars(report.by_agent, "(no agent)", "Calls by agent")}${table(report.by_agent, "Agent", "(no agent)")}</section>
<section id="refusals"><h2>Refusals</h2><p>${number(report.refusals.total)} call(s) refused and not forwarded.</p>${table(report.refusals.by_error, "Reason", "(none)")}${table(report.refusals.by_agent, "Agent", "(no agent)")}</section>
<section id="consents"><h2>Consents granted, withdrawn and expired</h2>${consentTable}</section>
<section id="erasures"><h2>Erasures</h2><p>${number(report.erasures.events)} erasure(s) (GDPR Art. 17) in this period, redacting ${number(report.erasures.records)} record(s). Erased users are not named here or anywhere in the trail.</p></section>
<section id="signature"><h2>Checking this report</h2>
<p class="note">This file is signed with the audit trail's Ed25519 key; the signature is in <code>&lt;this file&gt;.sig</code>. Check it against the key you trust (the output of <code>agent-attr audit pubkey</code>, not the copy below): <code>openssl pkeyutl -verify -pubin -inkey trail.pub.pem -rawin -in report.html -sigfile report.html.sig</code>, or <code>agent-attr audit verify-report report.html --public-key trail.pub.pem</code>.</p>
${report.public_key ? `<pre>${escapeHTML(report.public_key.trim())}</pre>` : `<p class="bad">Not signed: the trail's signing key was not available.</p>`}
</section>
</body>
</html>
`;
}
