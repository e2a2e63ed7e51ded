import { expect, test } from "bun:test";
import { SSEEventFilter } from "../../src/proxy/sse-filter.ts";

const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

const kept = 'data: {"choices":[{"delta":{"content":"hé"}}]}\n\n: comment\n\nevent: x\r\ndata: {"choices":[]}\r\n\r\n';
const hidden = 'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\n';
const stream = `${kept + hidden}data: [DONE]\n\n`;
const expected = `${kept}data: [DONE]\n\n`;
const hideUsage = (event: { data: string }) => event.data.includes('"usage"');

function run(bytes: Uint8Array, cuts: number[]): string {
  const filter = new SSEEventFilter(hideUsage);
  let out = "";
  let start = 0;
  for (const cut of [...cuts, bytes.length]) {
    out += decode(filter.push(bytes.subarray(start, cut)));
    start = cut;
  }
  return out + decode(filter.end());
}

test("drops exactly the hidden events and passes every other byte unchanged", () => {
  expect(run(encode(stream), [])).toBe(expected);
});

test("gives the same bytes whichever byte the stream is split at", () => {
  const bytes = encode(stream);
  for (let cut = 1; cut < bytes.length; cut++) expect(run(bytes, [cut])).toBe(expected);
});

test("forwards an event as soon as its blank line arrives, not later", () => {
  const filter = new SSEEventFilter(hideUsage);
  expect(decode(filter.push(encode("data: a\n")))).toBe("");
  expect(decode(filter.push(encode("\ndata: b")))).toBe("data: a\n\n");
  expect(decode(filter.end())).toBe("data: b");
});
