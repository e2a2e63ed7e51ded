/**
 * The dashboard's one way to the server: same-origin fetches carrying the dashboard's header
 * (without it the session cookie is not honoured) and no token — the browser holds only the
 * HttpOnly session cookie, which scripts cannot read.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Called when the session has ended (401): the app shows the sign-in again. */
let onSignedOut: () => void = () => {};
export const whenSignedOut = (handler: () => void) => void (onSignedOut = handler);

/** `accept`: statuses besides 2xx that are answers, not errors (e.g. 409 from /audit/verify: a tampered trail). */
export async function request(path: string, init: RequestInit = {}, accept: number[] = []): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("x-agent-attr-dashboard", "1");
  if (init.body && !headers.has("content-type")) headers.set("content-type", "application/json");
  const response = await fetch(path, { ...init, headers, credentials: "same-origin", cache: "no-store" });
  if (response.ok || accept.includes(response.status)) return response;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = (await response.clone().json()) as { error?: { message?: string } };
    if (body.error?.message) message = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  if (response.status === 401 && !path.startsWith("/dashboard/session")) onSignedOut();
  throw new ApiError(response.status, message);
}

export async function get<T>(path: string): Promise<T> {
  return (await (await request(path)).json()) as T;
}

export async function send<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await request(path, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  return (await response.json()) as T;
}

/** A query string from the set (non-empty) values. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params))
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** Saves bytes as a file (downloads go through fetch: a plain link could not carry the dashboard's header). */
export function saveFile(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
