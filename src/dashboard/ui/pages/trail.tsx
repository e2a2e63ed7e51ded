/**
 * Trail: is the trail intact (the last verification, green or red with the first bad seq and why;
 * run one now), the last signed checkpoint and its age, the chain events, an export with its signed
 * manifest, and (admin) a GDPR erasure.
 */
import { useEffect, useState } from "preact/hooks";
import { ApiError, get, query, request, saveFile, send } from "../api.ts";
import { Card, Problem } from "../components/common.tsx";
import { ago, count, time } from "../format.ts";
import type { ChainEventEntry, Role, TrailStatus, VerifyReport } from "../types.ts";

const kinds = [
  "query",
  "export",
  "erasure",
  "verify",
  "retention",
  "access_denied",
  "key_created",
  "key_revoked",
  "consent_granted",
  "consent_withdrawn",
  "consent_expired",
  "budget_alert",
] as const;

function Verification({ status, onVerified }: { status: TrailStatus; onVerified: () => void }) {
  const [running, setRunning] = useState(false);
  const [report, setReport] = useState<VerifyReport | null>(null);
  const [error, setError] = useState<string | null>(null);
  const verify = async () => {
    setRunning(true);
    setError(null);
    try {
      setReport((await (await request("/audit/verify", {}, [409])).json()) as VerifyReport);
      onVerified();
    } catch (caught) {
      setError((caught as Error).message);
    } finally {
      setRunning(false);
    }
  };
  const last = status.last_verification;
  const ok = report ? report.ok : last ? last.details.ok === true : null;
  const badSeq = report ? report.failure?.seq : (last?.details.bad_seq as number | null | undefined);
  const reason = report ? report.failure?.reason : (last?.details.reason as string | null | undefined);
  return (
    <Card title="Integrity" id="integrity">
      {ok === null ? (
        <p data-testid="verify-status" data-ok="unknown">
          This trail has not been verified yet.
        </p>
      ) : ok ? (
        <p class="ok" data-testid="verify-status" data-ok="true">
          ✓ Intact: the hash chain{report?.signed_through === 0 ? " verifies" : " and its signed checkpoints verify"}
          {report ? ` (${count(report.records)} records, ${count(report.events)} events)` : ""}.
        </p>
      ) : (
        <p class="bad" data-testid="verify-status" data-ok="false" data-bad-seq={badSeq ?? ""} role="alert">
          ✗ Tampered: first bad seq <strong>{badSeq}</strong> ({reason}){report?.failure ? `: ${report.failure.message}` : ""}.
        </p>
      )}
      {report?.ok && <SignedThrough report={report} />}
      <p class="hint">
        {report
          ? "Verified just now."
          : last
            ? `Last verified ${ago(last.timestamp)} by ${last.actor}, up to seq ${String(last.details.last_seq)}.`
            : ""}
      </p>
      <button type="button" onClick={verify} disabled={running}>
        {running ? "Verifying…" : "Verify now"}
      </button>
      <Problem error={error} />
      <dl class="fields">
        <dt>chain</dt>
        <dd class="hash">{status.chain_id ?? "empty"}</dd>
        <dt>last seq</dt>
        <dd data-testid="last-seq">{count(status.last_seq)}</dd>
        <dt>last signed checkpoint</dt>
        <dd data-testid="last-checkpoint">
          {status.last_checkpoint
            ? `seq ${count(status.last_checkpoint.seq)}, ${time(status.last_checkpoint.time)} (${ago(status.last_checkpoint.time)})`
            : "none yet"}
        </dd>
      </dl>
    </Card>
  );
}

/** How far signatures vouch for the chain just verified (the chain alone can be rewritten by whoever can write the database). */
function SignedThrough({ report }: { report: VerifyReport }) {
  if (report.last_seq === 0) return null;
  if (report.signed_through === 0) {
    return (
      <p class="error" data-testid="signed-through" role="alert">
        No signed checkpoint covers this chain: nothing shows it was not rewritten by someone with write access to the database. A running
        proxy signs one periodically and on shutdown: if this trail is older than that, they were deleted. Verify against a copy kept
        outside the database.
      </p>
    );
  }
  const unsigned = report.last_seq - report.signed_through;
  return (
    <p class="hint" data-testid="signed-through">
      Signed through seq {count(report.signed_through)}
      {unsigned > 0 ? ` (${count(unsigned)} newer entries not yet signed)` : ""}
      {report.external_checkpoints > 0
        ? `; ${count(report.external_checkpoints)} checkpoints kept outside the database checked.`
        : ", by checkpoints stored in the database only (keep a copy outside it: audit.checkpoint.file)."}
    </p>
  );
}

function Events({ version }: { version: number }) {
  const [kind, setKind] = useState("");
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const [page, setPage] = useState<{ events: ChainEventEntry[]; next_cursor: string | null } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const cursor = cursors.at(-1);
  useEffect(() => {
    get<{ events: ChainEventEntry[]; next_cursor: string | null }>(`/audit/events${query({ kind, cursor, limit: 25 })}`).then(
      setPage,
      (caught: Error) => setError(caught.message),
    );
  }, [kind, cursor, version]);
  return (
    <Card title="Chain events" id="events">
      <label for="event-kind">
        Kind{" "}
        <select
          id="event-kind"
          value={kind}
          onChange={(e) => (setKind((e.currentTarget as HTMLSelectElement).value), setCursors([undefined]))}
        >
          <option value="">all</option>
          {kinds.map((k) => (
            <option value={k}>{k}</option>
          ))}
        </select>
      </label>
      <Problem error={error} />
      {page && (
        <table data-testid="events-table">
          <thead>
            <tr>
              <th scope="col">seq</th>
              <th scope="col">when (UTC)</th>
              <th scope="col">kind</th>
              <th scope="col">who</th>
              <th scope="col">what</th>
            </tr>
          </thead>
          <tbody>
            {page.events.map((event) => (
              <tr>
                <td>{event.seq}</td>
                <td>{time(event.timestamp)}</td>
                <td>{event.kind}</td>
                <td>{event.actor}</td>
                <td class="details">{JSON.stringify(event.details)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <nav class="pager" aria-label="Pages of events">
        <button type="button" disabled={cursors.length === 1} onClick={() => setCursors(cursors.slice(0, -1))}>
          Newer
        </button>
        <button type="button" disabled={!page?.next_cursor} onClick={() => setCursors([...cursors, page!.next_cursor!])}>
          Older
        </button>
      </nav>
    </Card>
  );
}

function Export({ onDone }: { onDone: () => void }) {
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const start = async (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    const value = (name: string) => (form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement).value;
    setBusy(true);
    setError(null);
    setMessage(null);
    try {
      const format = value("format");
      const response = await request(`/audit/export/${format}${query({ start_date: value("start_date"), end_date: value("end_date") })}`);
      const id = response.headers.get("x-audit-export-id") ?? "export";
      saveFile(await response.blob(), `audit-export-${id}.${format}`);
      const manifest = await get<Record<string, unknown>>(`/audit/exports/${id}/manifest`);
      saveFile(new Blob([JSON.stringify(manifest, null, 2)], { type: "application/json" }), `audit-export-${id}.manifest.json`);
      setMessage(`Export ${id}: ${String(manifest.count ?? "?")} records, with its signed manifest.`);
      onDone();
    } catch (caught) {
      setError((caught as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Card title="Export" id="export">
      <form class="filters" onSubmit={start}>
        <label for="export-format">
          Format
          <select id="export-format" name="format">
            <option value="csv">CSV</option>
            <option value="ndjson">NDJSON</option>
            <option value="json">JSON</option>
          </select>
        </label>
        <label for="export-start">
          From (YYYY-MM-DD)
          <input id="export-start" name="start_date" type="date" />
        </label>
        <label for="export-end">
          To (YYYY-MM-DD)
          <input id="export-end" name="end_date" type="date" />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? "Exporting…" : "Export with manifest"}
        </button>
      </form>
      {message && <p data-testid="export-done">{message}</p>}
      <Problem error={error} />
    </Card>
  );
}

function Erase({ role, onDone }: { role: Role; onDone: () => void }) {
  const [message, setMessage] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  if (role !== "admin") {
    return (
      <Card title="Erase a user (GDPR)" id="erase">
        <p data-testid="erase-needs-admin">Erasure needs the admin role; you are signed in as {role}.</p>
      </Card>
    );
  }
  const erase = async (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    const user = (form.elements.namedItem("erase-user") as HTMLInputElement).value.trim();
    const confirmed = (form.elements.namedItem("erase-confirm") as HTMLInputElement).checked;
    if (!user || !confirmed) return setError("Type the user id and tick the confirmation.");
    setError(null);
    try {
      await send("DELETE", `/audit/user/${encodeURIComponent(user)}`);
      form.reset();
      setMessage(
        "Erased: the user's personal fields are gone from every record, and the erasure is a chain event (it does not name the user).",
      );
      onDone();
    } catch (caught) {
      setError(caught instanceof ApiError ? caught.message : String(caught));
    }
  };
  return (
    <Card title="Erase a user (GDPR)" id="erase">
      <form class="filters" onSubmit={erase}>
        <label for="erase-user">
          User id
          <input id="erase-user" name="erase-user" required />
        </label>
        <label for="erase-confirm" class="check">
          <input id="erase-confirm" name="erase-confirm" type="checkbox" /> I understand this cannot be undone
        </label>
        <button type="submit" class="danger">
          Erase
        </button>
      </form>
      {message && <p data-testid="erase-done">{message}</p>}
      <Problem error={error} />
    </Card>
  );
}

export function Trail({ role }: { role: Role }) {
  const [status, setStatus] = useState<TrailStatus | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [version, setVersion] = useState(0);
  const refresh = () => setVersion((v) => v + 1);
  useEffect(() => {
    get<TrailStatus>("/audit/trail/status").then(setStatus, (caught: Error) => setError(caught.message));
  }, [version]);
  return (
    <main class="page" data-ready={status ? "true" : "false"} aria-busy={!status}>
      <div class="toolbar">
        <h1>Trail</h1>
      </div>
      <Problem error={error} />
      {status && (
        <div class="grid">
          <Verification status={status} onVerified={refresh} />
          <Export onDone={refresh} />
          <Erase role={role} onDone={refresh} />
        </div>
      )}
      <Events version={version} />
    </main>
  );
}
