/**
 * The dashboard's shell: who is signed in (or that no sign-in is needed), the navigation, and the
 * page of the address's hash (`#/overview`, `#/explore`, `#/records`, `#/records/<id>`, `#/trail`,
 * `#/limits`). The admin or auditor token is sent once, to `POST /dashboard/session`, and kept
 * nowhere in the page: the server answers with an HttpOnly session cookie.
 */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, get, send, whenSignedOut } from "./api.ts";
import { Explore } from "./pages/explore.tsx";
import { Limits } from "./pages/limits.tsx";
import { Overview } from "./pages/overview.tsx";
import { RecordDetail, Records } from "./pages/records.tsx";
import { Trail } from "./pages/trail.tsx";
import type { Role } from "./types.ts";
import "./styles.css";

interface Session {
  sign_in: "none" | "required";
  role: Role | null;
}

const pages = [
  { path: "overview", label: "Overview" },
  { path: "explore", label: "Explore" },
  { path: "records", label: "Records" },
  { path: "trail", label: "Trail" },
  { path: "limits", label: "Limits and keys" },
] as const;

const currentRoute = () => location.hash.replace(/^#\/?/, "") || "overview";

function useRoute(): string {
  const [route, setRoute] = useState(currentRoute());
  useEffect(() => {
    const changed = () => setRoute(currentRoute());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}

function SignIn({ onSignedIn }: { onSignedIn: (role: Role) => void }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    const field = form.elements.namedItem("token") as HTMLInputElement;
    setBusy(true);
    setError(null);
    try {
      const { role } = await send<{ role: Role }>("POST", "/dashboard/session", { token: field.value });
      field.value = "";
      onSignedIn(role);
    } catch (caught) {
      setError(caught instanceof ApiError ? caught.message : String(caught));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="sign-in">
      <h1>agent-attr</h1>
      <form onSubmit={submit} aria-describedby="sign-in-help">
        <label for="token">Admin or auditor token</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required autofocus />
        <p id="sign-in-help" class="hint">
          The token of AGENT_ATTR_ADMIN_TOKEN, AGENT_ATTR_AUDITOR_TOKEN or the config's admin.tokens. It is sent once; the browser then
          keeps only a session cookie (8 hours at most, 30 minutes idle).
        </p>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}

function Page({ route, role }: { route: string; role: Role }) {
  const [name, ...rest] = route.split("/");
  if (name === "explore") return <Explore />;
  if (name === "records" && rest.length > 0) return <RecordDetail id={decodeURIComponent(rest.join("/"))} />;
  if (name === "records") return <Records />;
  if (name === "trail") return <Trail role={role} />;
  if (name === "limits") return <Limits role={role} />;
  return <Overview />;
}

function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const route = useRoute();
  useEffect(() => {
    whenSignedOut(() => setSession((s) => (s ? { ...s, role: null } : s)));
    get<Session>("/dashboard/session").then(setSession, (error: Error) => setFailure(error.message));
  }, []);
  if (failure)
    return (
      <p class="error" role="alert">
        {failure}
      </p>
    );
  if (!session) return <p class="loading">Loading…</p>;
  if (!session.role) return <SignIn onSignedIn={(role) => setSession({ ...session, role })} />;
  const signOut = async () => {
    await send("DELETE", "/dashboard/session");
    setSession({ ...session, role: null });
  };
  const active = route.split("/")[0] || "overview";
  return (
    <>
      <header class="top">
        <span class="brand">agent-attr</span>
        <nav aria-label="Pages">
          {pages.map((page) => (
            <a href={`#/${page.path}`} aria-current={active === page.path ? "page" : undefined}>
              {page.label}
            </a>
          ))}
        </nav>
        <span class="who">
          {session.sign_in === "none" ? "no sign-in (loopback)" : `signed in: ${session.role}`}
          {session.sign_in === "required" && (
            <button type="button" class="link" onClick={signOut}>
              Sign out
            </button>
          )}
        </span>
      </header>
      <Page route={route} role={session.role} />
    </>
  );
}

render(<App />, document.getElementById("app")!);
