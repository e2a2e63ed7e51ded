/**
 * Refuses requests to the audit API and the dashboard that a browser sends on behalf of another
 * site (cross-site request forgery), and DNS-rebinding requests to an open (tokenless, loopback)
 * server. Clients that are not browsers (curl, SDKs, the CLI) send none of these headers and are
 * not affected.
 *  - `Origin` present and naming another host than the request's `Host` (or `X-Forwarded-Host`):
 *    refused. Browsers send Origin with every POST/DELETE and with cross-origin fetches.
 *  - `Sec-Fetch-Site: cross-site` or `same-site` (a sibling subdomain): refused; `same-origin` and
 *    `none` (typed in the address bar) pass.
 *  - An open server (no access token configured, loopback only): the `Host` must be a loopback
 *    name, so a page whose own name was made to resolve to 127.0.0.1 cannot read the trail.
 * Session cookies are honoured only with the dashboard's header besides (./sessions.ts).
 */
import { apiError } from "./http.ts";

const loopbackNames = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

/** `host[:port]` → host, lower-cased (IPv6 in brackets kept). */
const hostName = (host: string) => {
  const lower = host.trim().toLowerCase();
  return lower.startsWith("[") ? lower.slice(0, lower.indexOf("]") + 1) : lower.replace(/:\d+$/, "");
};

export function crossSiteRefusal(request: Request, options: { open: boolean }): Response | null {
  const host = (request.headers.get("x-forwarded-host") ?? request.headers.get("host") ?? new URL(request.url).host)
    .split(",")[0]!
    .trim()
    .toLowerCase();
  const refuse = (why: string) =>
    apiError(
      "forbidden",
      `Refused a cross-site request: ${why}. Open the dashboard at this server's own address, or call the API from a program, not a web page.`,
    );
  const origin = request.headers.get("origin");
  if (origin !== null && origin !== "null") {
    let originHost: string;
    try {
      originHost = new URL(origin).host.toLowerCase();
    } catch {
      return refuse(`its Origin '${origin}' is not a URL`);
    }
    if (originHost !== host) return refuse(`it comes from a page of ${origin}, not of ${host}`);
  } else if (origin === "null") {
    return refuse("it comes from a page with an opaque origin");
  }
  const site = request.headers.get("sec-fetch-site");
  if (site === "cross-site" || site === "same-site") return refuse(`the browser marks it ${site}`);
  if (options.open && !loopbackNames.has(hostName(host))) {
    return refuse(`this server has no access token, so it answers only to loopback names (127.0.0.1, localhost), not '${hostName(host)}'`);
  }
  return null;
}
