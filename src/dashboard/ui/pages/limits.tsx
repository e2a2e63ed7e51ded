/** Limits and keys: what is used of each limit and budget now (per tier and scope, for recent callers), and the proxy keys (admin: create, revoke). */
import { useEffect, useState } from "preact/hooks";
import { ApiError, get, send } from "../api.ts";
import { Card, Problem } from "../components/common.tsx";
import { count, time, usd } from "../format.ts";
import type { LimitUsage, ProxyKey, Role } from "../types.ts";

const amount = (unit: LimitUsage["unit"], value: number) => (unit === "nano_usd" ? usd(value) : count(Math.round(value)));

function Usage() {
  const [data, setData] = useState<{ plugins: string[]; limits: LimitUsage[] } | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    get<{ plugins: string[]; limits: LimitUsage[] }>("/audit/limits").then(setData, (caught: Error) => setError(caught.message));
  }, []);
  return (
    <Card title="Limits and budgets now" id="limits">
      <Problem error={error} />
      {data && data.limits.length === 0 && (
        <p class="empty" data-testid="limits-empty">
          {data.plugins.length === 0
            ? "No limit plugin is configured (add tiers({...}) to the config)."
            : "No call has been metered since the proxy started."}
        </p>
      )}
      {data && data.limits.length > 0 && (
        <table data-testid="limits-table">
          <thead>
            <tr>
              {["tier", "scope", "who", "limit", "used", "held by calls in flight", "of", "remaining", "resets", "last call"].map((h) => (
                <th scope="col">{h}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {data.limits.map((u) => (
              <tr>
                <td>{u.tier}</td>
                <td>{u.scope}</td>
                <td>{u.who}</td>
                <td>{u.limit}</td>
                <td class="num">
                  <meter min={0} max={u.max} value={u.used} aria-label={`${u.limit} used`} /> {amount(u.unit, u.used)}
                </td>
                <td class="num">{amount(u.unit, u.held)}</td>
                <td class="num">{amount(u.unit, u.max)}</td>
                <td class="num">{amount(u.unit, u.remaining)}</td>
                <td>{time(u.resets_at)}</td>
                <td>{time(u.last_seen)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p class="hint">
        Scopes of the most recent calls this proxy process charged (at most 200 per tier); amounts are the limiter store's (shared by
        replicas on Redis).
      </p>
    </Card>
  );
}

const globs = (text: string) =>
  text
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean);

function Keys({ role }: { role: Role }) {
  const [keys, setKeys] = useState<ProxyKey[] | null>(null);
  const [secret, setSecret] = useState<{ id: string; key: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [version, setVersion] = useState(0);
  useEffect(() => {
    get<{ keys: ProxyKey[] }>("/audit/keys").then(
      (answer) => setKeys(answer.keys),
      (caught: Error) => setError(caught.message),
    );
  }, [version]);
  const create = async (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    const value = (name: string) => (form.elements.namedItem(name) as HTMLInputElement).value.trim();
    setError(null);
    try {
      const days = Number(value("key-days"));
      const created = await send<{ key: string; record: ProxyKey }>("POST", "/audit/keys", {
        agents: globs(value("key-agents")),
        users: value("key-users") ? globs(value("key-users")) : null,
        tier: value("key-tier") || null,
        expires_at: days > 0 ? new Date(Date.now() + days * 86_400_000).toISOString() : null,
      });
      form.reset();
      setSecret({ id: created.record.id, key: created.key });
      setVersion((v) => v + 1);
    } catch (caught) {
      setError(caught instanceof ApiError ? caught.message : String(caught));
    }
  };
  const revoke = async (id: string) => {
    if (!confirm(`Revoke ${id}? Calls with it are refused from the next one.`)) return;
    try {
      await send("DELETE", `/audit/keys/${encodeURIComponent(id)}`);
      setVersion((v) => v + 1);
    } catch (caught) {
      setError(caught instanceof ApiError ? caught.message : String(caught));
    }
  };
  return (
    <Card title="Proxy keys" id="keys">
      <Problem error={error} />
      {secret && (
        <div class="secret" role="status" data-testid="new-key">
          <p>
            Key <strong>{secret.id}</strong> created. Copy it now: it is shown this once and stored only as a hash.
          </p>
          <code>{secret.key}</code>{" "}
          <button type="button" onClick={() => setSecret(null)}>
            Done
          </button>
        </div>
      )}
      {keys && (
        <table data-testid="keys-table">
          <thead>
            <tr>
              {["id", "agents", "users", "tier", "created", "expires", "status", ""].map((h) => (
                <th scope="col">{h}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {keys.length === 0 && (
              <tr>
                <td colSpan={8} class="empty">
                  No proxy keys.
                </td>
              </tr>
            )}
            {keys.map((key) => (
              <tr>
                <td>{key.id}</td>
                <td>{key.agents.join(", ")}</td>
                <td>{key.users ? key.users.join(", ") : "none"}</td>
                <td>{key.tier ?? "default"}</td>
                <td>{time(key.created_at)}</td>
                <td>{key.expires_at ? time(key.expires_at) : "never"}</td>
                <td>{key.revoked_at ? `revoked ${time(key.revoked_at)}` : "active"}</td>
                <td>
                  {role === "admin" && !key.revoked_at && (
                    <button type="button" class="danger" onClick={() => revoke(key.id)} aria-label={`Revoke ${key.id}`}>
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {role === "admin" ? (
        <form class="filters" onSubmit={create} aria-label="Create a proxy key">
          <label for="key-agents">
            Agents (ID or globs, comma-separated)
            <input id="key-agents" name="key-agents" required />
          </label>
          <label for="key-users">
            Users (globs; empty: none, * any)
            <input id="key-users" name="key-users" />
          </label>
          <label for="key-tier">
            Tier
            <input id="key-tier" name="key-tier" />
          </label>
          <label for="key-days">
            Expires in days (empty: never)
            <input id="key-days" name="key-days" type="number" min="1" />
          </label>
          <button type="submit">Create key</button>
        </form>
      ) : (
        <p class="hint">Creating and revoking keys needs the admin role.</p>
      )}
    </Card>
  );
}

export function Limits({ role }: { role: Role }) {
  return (
    <main class="page" data-ready="true">
      <div class="toolbar">
        <h1>Limits and keys</h1>
      </div>
      <Usage />
      <Keys role={role} />
    </main>
  );
}
