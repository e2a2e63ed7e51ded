import { describe, expect, test } from "bun:test";
import { SSEParser, type SSEEvent } from "../../src/proxy/sse.ts";

const encode = (text: string) => new TextEncoder().encode(text);

function parseInPieces(bytes: Uint8Array, cuts: number[]): SSEEvent[] {
  const parser = new SSEParser();
  const events: SSEEvent[] = [];
  let start = 0;
  for (const cut of [...cuts, bytes.length]) {
    events.push(...parser.push(bytes.subarray(start, cut)));
    start = cut;
  }
  events.push(...parser.end());
  return events;
}

const stream =
  'event: message_start\r\ndata: {"a":1}\r\n\r\n' +
  ": keep-alive comment\n\n" +
  'data: {"text":"héllo 👋"}\n\n' +
  "data: line one\ndata: line two\n\n" +
  "event: ping\rdata:no-space\r\r" +
  "data: [DONE]\n\n";

const expected: SSEEvent[] = [
  { event: "message_start", data: '{"a":1}' },
  { event: null, data: '{"text":"héllo 👋"}' },
  { event: null, data: "line one\nline two" },
  { event: "ping", data: "no-space" },
  { event: null, data: "[DONE]" },
];

describe("SSEParser", () => {
  test("parses CRLF, CR and LF line ends, comments and multi-line data", () => {
    expect(parseInPieces(encode(stream), [])).toEqual(expected);
  });

  test("gives the same events whichever byte the stream is split at", () => {
    const bytes = encode(stream);
    for (let cut = 1; cut < bytes.length; cut++) {
      expect(parseInPieces(bytes, [cut])).toEqual(expected);
    }
  });

  test("gives the same events when every byte arrives alone", () => {
    const bytes = encode(stream);
    const cuts = Array.from({ length: bytes.length - 1 }, (_, i) => i + 1);
    expect(parseInPieces(bytes, cuts)).toEqual(expected);
  });

  test("a CR at the end of one chunk and LF at the start of the next is one line end", () => {
    const parser = new SSEParser();
    expect(parser.push(encode("data: x\r"))).toEqual([]);
    expect(parser.push(encode("\n\r\n"))).toEqual([{ event: null, data: "x" }]);
  });

  test("dispatches a last event whose blank line never came", () => {
    const parser = new SSEParser();
    expect(parser.push(encode('data: {"usage":1}'))).toEqual([]);
    expect(parser.end()).toEqual([{ event: null, data: '{"usage":1}' }]);
  });

  test("ignores events without data and unknown fields", () => {
    expect(parseInPieces(encode("event: empty\n\nid: 7\nretry: 10\nfoo: bar\n\n"), [])).toEqual([]);
  });
});
