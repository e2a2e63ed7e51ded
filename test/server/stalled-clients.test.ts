// Stalled uploads (issue 12 item 10): proxied routes have no server idle timeout (quiet streams
// must live), so an upload that stops sending would hold its connection for ever. The body has a
// deadline (server.bodyTimeoutMs → 408, connection closed), and one client address can hold only
// server.maxConnectionsPerClient requests open at once (→ 429). Both refusals are recorded.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { AuditRecord } from "../../src/trail/record.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
});

interface RawClient {
  /** Everything the proxy sent back. */
  received(): string;
  closed: Promise<void>;
  write(text: string): void;
  end(): void;
}

/** A client on a raw socket that sends `head` and then as much as the test writes. */
async function rawClient(proxy: TestProxy, head: string): Promise<RawClient> {
  let received = "";
  const closed = Promise.withResolvers<void>();
  const { port, hostname } = new URL(proxy.url);
  const socket = await Bun.connect({
    hostname,
    port: Number(port),
    socket: {
      data(_socket, data) {
        received += data.toString();
      },
      close: () => closed.resolve(),
      error: () => closed.resolve(),
    },
  });
  socket.write(head);
  return { received: () => received, closed: closed.promise, write: (text) => socket.write(text), end: () => socket.end() };
}

const chatHead = (length: number | "chunked", agent = "stalled") =>
  `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\nx-agent-id: ${agent}\r\n` +
  (length === "chunked" ? "transfer-encoding: chunked\r\n\r\n" : `content-length: ${length}\r\n\r\n`);

async function recordOf(proxy: TestProxy, id: string | null | undefined): Promise<AuditRecord | undefined> {
  await proxy.runtime.store.flush();
  return (await proxy.runtime.reader.records({ limit: 1000 })).records.find((r) => r.id === id);
}

const idOf = (response: string) => /x-audit-record-id: (\S+)/i.exec(response)?.[1];

describe("a body that stops arriving", () => {
  let proxy: TestProxy;
  beforeAll(async () => {
    proxy = await startTestProxy(upstream.url, { server: { bodyTimeoutMs: 300 } });
  });
  afterAll(async () => {
    await proxy.stop();
  });

  for (const framing of ["content-length", "chunked"] as const) {
    test(`(${framing}) is refused with 408 body_timeout, the connection closed, the refusal recorded`, async () => {
      const body = '{"model":"gpt-4o","messages":[';
      const client = await rawClient(proxy, chatHead(framing === "chunked" ? "chunked" : 1000));
      client.write(framing === "chunked" ? `${body.length.toString(16)}\r\n${body}\r\n` : body);
      const forwarded = upstream.requests.length;
      // The proxy closes the connection itself; the test only bounds how long it waits for that.
      const closed = await Promise.race([client.closed.then(() => true), Bun.sleep(5000).then(() => false)]);
      expect(closed).toBe(true);
      expect(client.received()).toStartWith("HTTP/1.1 408");
      expect(client.received()).toContain('"code":"body_timeout"');
      expect(client.received()).toContain("server.bodyTimeoutMs");
      expect(upstream.requests.length).toBe(forwarded);
      expect(await recordOf(proxy, idOf(client.received()))).toMatchObject({
        outcome: "rejected",
        status: 408,
        error_type: "body_timeout",
        agent_id: "stalled",
      });
    });
  }

  for (const framing of ["content-length", "chunked"] as const) {
    test(`(${framing}) a client that hangs up mid-body: recorded client_aborted, not an internal error, nothing forwarded`, async () => {
      const agent = `leaver-${framing}`;
      const body = '{"model":"gpt-4o","messages":[';
      const client = await rawClient(proxy, chatHead(framing === "chunked" ? "chunked" : 1000, agent));
      client.write(framing === "chunked" ? `${body.length.toString(16)}\r\n${body}\r\n` : body);
      const forwarded = upstream.requests.length;
      await Bun.sleep(50);
      client.end();
      await client.closed;
      let record: AuditRecord | undefined;
      for (let i = 0; i < 100 && !record; i++, await Bun.sleep(20)) {
        await proxy.runtime.store.flush();
        record = (await proxy.runtime.reader.records({ limit: 1000 })).records.find((r) => r.agent_id === agent);
      }
      expect(record).toMatchObject({ outcome: "client_aborted", error_type: "client_aborted", status: null });
      expect(upstream.requests.length).toBe(forwarded);
    });
  }

  test("a body that arrives in time, in pieces, is served", async () => {
    const body = JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] });
    const client = await rawClient(proxy, chatHead(body.length, "steady"));
    client.write(body.slice(0, 10));
    await Bun.sleep(100);
    client.write(body.slice(10));
    for (let i = 0; i < 100 && !client.received().includes("Hello world"); i++) await Bun.sleep(20);
    expect(client.received()).toStartWith("HTTP/1.1 200");
    client.end();
  });
});

describe("requests open per client address", () => {
  let proxy: TestProxy;
  beforeAll(async () => {
    proxy = await startTestProxy(upstream.url, { server: { bodyTimeoutMs: 60_000, maxConnectionsPerClient: 2 } });
  });
  afterAll(async () => {
    await proxy.stop();
  });

  test("past the limit a request is refused at once with 429, recorded; closing one lets the next in", async () => {
    const stalled = [await rawClient(proxy, chatHead(1000)), await rawClient(proxy, chatHead(1000))];
    await Bun.sleep(100); // both requests reached the proxy's routes
    const chat = () =>
      fetch(`${proxy.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-agent-id": "third" },
        body: JSON.stringify({ model: "gpt-4o", messages: [] }),
      });
    const refused = await chat();
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("1");
    const error = ((await refused.json()) as { error: { code: string; message: string } }).error;
    expect(error.code).toBe("too_many_connections");
    expect(error.message).toContain("server.maxConnectionsPerClient");
    expect(await recordOf(proxy, refused.headers.get("x-audit-record-id"))).toMatchObject({
      outcome: "rejected",
      status: 429,
      error_type: "too_many_connections",
      agent_id: "third",
    });

    stalled[0]!.end();
    await stalled[0]!.closed;
    let next: Response | null = null;
    for (let i = 0; i < 100 && next?.status !== 200; i++) {
      await Bun.sleep(20);
      next = await chat();
      await next.text();
    }
    expect(next!.status).toBe(200);
    stalled[1]!.end();
  });

  test("0 turns the bound off (behind a load balancer every client shares its address)", async () => {
    const open = await startTestProxy(upstream.url, { server: { bodyTimeoutMs: 60_000, maxConnectionsPerClient: 0 } });
    try {
      const stalled = await Promise.all([0, 1, 2].map(() => rawClient(open, chatHead(1000))));
      await Bun.sleep(100);
      const response = await fetch(`${open.url}/v1/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model: "gpt-4o", messages: [] }),
      });
      expect(response.status).toBe(200);
      for (const client of stalled) client.end();
    } finally {
      await open.stop();
    }
  });
});
