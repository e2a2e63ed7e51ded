import { expect, test } from "bun:test";
import { headerAttribution } from "../../plugins/index.ts";
import { clientResponseHeaders, neverUpstreamWith, upstreamRequestHeaders } from "../../src/proxy/headers.ts";

// The proxy strips what its plugins read for it alone: here the default header-attribution plugin.
const drop = neverUpstreamWith(headerAttribution().inboundHeaders);

test("the upstream never sees hop-by-hop, Connection-named, host, length or attribution headers", () => {
  const inbound = new Headers({
    authorization: "Bearer sk-x",
    "content-type": "application/json",
    "anthropic-version": "2023-06-01",
    connection: "keep-alive, X-Secret-Hop",
    "x-secret-hop": "1",
    "keep-alive": "timeout=5",
    "transfer-encoding": "chunked",
    host: "proxy:8080",
    "content-length": "12",
    "accept-encoding": "gzip",
    "x-agent-id": "a",
    "x-user-id": "u",
    "x-task-context": "t",
    traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
  });
  expect(Object.fromEntries(upstreamRequestHeaders(inbound, drop))).toEqual({
    authorization: "Bearer sk-x",
    "content-type": "application/json",
    "anthropic-version": "2023-06-01",
  });
});

test("the client gets the upstream's headers minus hop-by-hop and the encoding Bun already undid", () => {
  const upstream = new Headers({
    "content-type": "application/json",
    "content-encoding": "gzip",
    "content-length": "120",
    "x-ratelimit-remaining-requests": "99",
    "retry-after": "7",
    connection: "close",
  });
  upstream.append("set-cookie", "a=1");
  upstream.append("set-cookie", "b=2");
  const headers = clientResponseHeaders(upstream);
  expect(headers.get("content-encoding")).toBeNull();
  expect(headers.get("content-length")).toBeNull();
  expect(headers.get("connection")).toBeNull();
  expect(headers.get("x-ratelimit-remaining-requests")).toBe("99");
  expect(headers.get("retry-after")).toBe("7");
  expect(headers.getSetCookie()).toEqual(["a=1", "b=2"]);
});

test("a Connection token that is not a header name is ignored, not thrown on (either direction)", () => {
  const inbound = new Headers({ authorization: "Bearer sk-x", connection: "keep-alive, x y, , X-Hop", "x-hop": "1" });
  expect(Object.fromEntries(upstreamRequestHeaders(inbound, drop))).toEqual({ authorization: "Bearer sk-x" });
  const upstream = new Headers({ "content-type": "application/json", connection: "keep-alive, bad\ttoken" });
  expect(Object.fromEntries(clientResponseHeaders(upstream))).toEqual({ "content-type": "application/json" });
});
