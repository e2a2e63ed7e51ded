/**
 * The bench's OTLP endpoint for the "otel" target (BENCH_OTEL=1): takes `POST /v1/traces` as a
 * collector does and counts what arrived (GET /__bench/stats: requests and bytes), keeping nothing.
 * Prints its URL on the first stdout line; serves until killed.
 */
let requests = 0;
let bytes = 0;
const sink = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  async fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/__bench/stats") return Response.json({ requests, bytes });
    if (request.method !== "POST" || path !== "/v1/traces") return new Response("not found", { status: 404 });
    bytes += (await request.arrayBuffer()).byteLength;
    requests++;
    return new Response(new Uint8Array(0), { headers: { "content-type": "application/x-protobuf" } });
  },
});
console.log(`http://127.0.0.1:${sink.port}`);
export {};
