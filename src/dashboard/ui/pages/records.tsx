/** Records: the table with filters and cursor pagination, a look-up by X-Audit-Record-ID, and one record with its delegation chain and its place in the hash chain. */
import { useEffect, useState } from "preact/hooks";
import { ApiError, get, query } from "../api.ts";
import { useAnswer } from "../answer.ts";
import { Card, Problem, RangePicker } from "../components/common.tsx";
import { FilterForm, type Filters } from "../components/filters.tsx";
import { count, time, usd } from "../format.ts";
import type { AuditRecord, ChainEntry } from "../types.ts";

const pageSize = 50;

export function Records() {
  const [filters, setFilters] = useState<Filters>({});
  const [days, setDays] = useState(30);
  /** Cursors of the pages before this one (for Previous), and this page's. */
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const cursor = cursors.at(-1);
  const { data: page, error } = useAnswer<{ records: AuditRecord[]; next_cursor: string | null }>(
    `/audit/records${query({ ...filters, days, limit: pageSize, cursor })}`,
  );
  const apply = (next: Filters) => {
    setFilters(next);
    setCursors([undefined]);
  };
  const lookUp = (event: Event) => {
    event.preventDefault();
    const id = ((event.currentTarget as HTMLFormElement).elements.namedItem("record-id") as HTMLInputElement).value.trim();
    if (id) location.hash = `#/records/${encodeURIComponent(id)}`;
  };
  return (
    <main class="page" data-ready={page ? "true" : "false"} aria-busy={!page}>
      <div class="toolbar">
        <h1>Records</h1>
        <RangePicker days={days} onChange={(d) => (setDays(d), setCursors([undefined]))} id="records-range" />
        {/* biome-ignore lint/a11y/useSemanticElements: a form with role="search" is announced by every screen reader; <search> is not yet */}
        <form class="inline" onSubmit={lookUp} role="search">
          <label for="record-id">X-Audit-Record-ID</label>
          <input id="record-id" name="record-id" placeholder="0193…" size={38} />
          <button type="submit">Open</button>
        </form>
      </div>
      <FilterForm initial={filters} onApply={apply} idPrefix="records" />
      <Problem error={error} />
      {page && (
        <>
          <table data-testid="records-table">
            <thead>
              <tr>
                {["seq", "time (UTC)", "agent", "user", "task", "model", "outcome", "status", "tokens in / out", "cost"].map((h) => (
                  <th scope="col">{h}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {page.records.length === 0 && (
                <tr>
                  <td colSpan={10} class="empty">
                    No records match.
                  </td>
                </tr>
              )}
              {page.records.map((r) => (
                <tr>
                  <td>
                    <a href={`#/records/${encodeURIComponent(r.id)}`} aria-label={`Record ${r.seq}`}>
                      {r.seq}
                    </a>
                  </td>
                  <td>{time(r.timestamp)}</td>
                  <td>{r.agent_id ?? "—"}</td>
                  <td>{r.user_id ?? "—"}</td>
                  <td class="task">{r.task_context ?? "—"}</td>
                  <td>{r.model ?? "—"}</td>
                  <td>{r.outcome ?? "in flight"}</td>
                  <td>{r.status ?? "—"}</td>
                  <td class="num">
                    {count(r.input_tokens)} / {count(r.output_tokens)}
                  </td>
                  <td class="num">{usd(r.cost_nano_usd)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <nav class="pager" aria-label="Pages of records">
            <button type="button" disabled={cursors.length === 1} onClick={() => setCursors(cursors.slice(0, -1))}>
              Previous page
            </button>
            <span data-testid="page-number">Page {cursors.length}</span>
            <button type="button" disabled={!page.next_cursor} onClick={() => setCursors([...cursors, page.next_cursor!])}>
              Next page
            </button>
          </nav>
        </>
      )}
    </main>
  );
}

/** user → delegating agents (a JWT's RFC 8693 `act` chain, innermost first) → parent agent → agent. */
function delegationChain(record: AuditRecord): string[] {
  const acts: string[] = [];
  try {
    let act = record.delegation ? (JSON.parse(record.delegation) as { act?: { sub?: string; act?: unknown } }).act : undefined;
    while (act && typeof act === "object") {
      if (typeof act.sub === "string") acts.unshift(act.sub);
      act = act.act as typeof act;
    }
  } catch {
    // not JSON: no act chain to draw
  }
  const chain = [record.user_id ? `user ${record.user_id}` : null, ...acts, record.parent_agent_id, record.agent_id].filter(
    (x): x is string => !!x,
  );
  return chain.filter((step, i) => step !== chain[i - 1]);
}

export function RecordDetail({ id }: { id: string }) {
  const [record, setRecord] = useState<AuditRecord | null>(null);
  const [entry, setEntry] = useState<ChainEntry | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setRecord(null);
    setEntry(null);
    get<AuditRecord>(`/audit/records/${encodeURIComponent(id)}`)
      .then((found) => {
        setRecord(found);
        return get<ChainEntry>(`/audit/chain/${found.seq}`).then(setEntry);
      })
      .catch((caught: Error) =>
        setError(caught instanceof ApiError && caught.status === 404 ? `No audit record has id '${id}'.` : caught.message),
      );
  }, [id]);
  const chain = record ? delegationChain(record) : [];
  return (
    <main class="page" data-ready={record && entry ? "true" : "false"} aria-busy={!record}>
      <div class="toolbar">
        <h1>Record {record ? record.seq : ""}</h1>
        <a href="#/records">Back to records</a>
      </div>
      <Problem error={error} />
      {record && (
        <div class="grid">
          <Card title="Delegation" id="delegation">
            <ol class="chain" data-testid="delegation-chain" aria-label="Who acted for whom">
              {chain.map((step) => (
                <li>{step}</li>
              ))}
            </ol>
          </Card>
          <Card title="Place in the hash chain" id="chain-place">
            {entry ? (
              <dl class="fields">
                <dt>seq</dt>
                <dd>{entry.seq}</dd>
                <dt>prev_hash</dt>
                <dd class="hash">{entry.prev_hash}</dd>
                <dt>hash</dt>
                <dd class="hash" data-testid="record-hash">
                  {entry.hash}
                </dd>
                <dt>commitment</dt>
                <dd class="hash">{entry.commitment ?? (entry.redacted ? "erased (personal fields removed)" : "—")}</dd>
                <dt>signed checkpoint</dt>
                <dd>{entry.checkpoint ? `seq ${entry.checkpoint.seq}, ${time(entry.checkpoint.time)}` : "none yet covers it"}</dd>
              </dl>
            ) : (
              <p class="loading">Loading…</p>
            )}
          </Card>
          <Card title="All fields" id="fields">
            <dl class="fields" data-testid="record-fields">
              {Object.entries(record).map(([field, value]) => (
                <>
                  <dt>{field}</dt>
                  <dd>{value === null ? <em>null</em> : String(value)}</dd>
                </>
              ))}
            </dl>
          </Card>
        </div>
      )}
    </main>
  );
}
