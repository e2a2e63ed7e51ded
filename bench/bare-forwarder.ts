/**
 * The floor for one Bun hop: forwards every request to the upstream (argv[2]) with the same
 * method, headers and body, and streams the answer back. No parsing, no audit.
 * Prints its URL on the first stdout line; serves until killed.
 */
const upstream = process.argv[2]?.replace(/\/+$/, "");
if (!upstream) throw new Error("usage: bun bench/bare-forwarder.ts <upstream-url>");

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(request) {
    const url = new URL(request.url);
    const headers = new Headers(request.headers);
    headers.delete("host");
    headers.delete("content-length");
    const body = request.method === "GET" || request.method === "HEAD" ? null : await request.arrayBuffer();
    const response = await fetch(upstream + url.pathname + url.search, { method: request.method, headers, body, signal: request.signal });
    const out = new Headers(response.headers);
    out.delete("content-encoding");
    out.delete("content-length");
    return new Response(response.body, { status: response.status, headers: out });
  },
});

console.log(`http://127.0.0.1:${server.port}`);
