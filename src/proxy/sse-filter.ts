/**
 * Removes whole events from a server-sent-event byte stream and passes every other byte through
 * unchanged. Used only for events the proxy itself caused and the client did not ask for (the
 * usage chunk of an OpenAI stream when the proxy added `stream_options.include_usage`). An event
 * is forwarded as soon as its terminating blank line has arrived.
 */
import { SSEParser, type SSEEvent } from "./sse.ts";

const LF = 10;
const CR = 13;

export class SSEEventFilter {
  private pending = new Uint8Array(0);

  constructor(private readonly hide: (event: SSEEvent) => boolean) {}

  /** The bytes to forward now (complete events that are not hidden). */
  push(chunk: Uint8Array): Uint8Array {
    const bytes = this.pending.length ? concat(this.pending, chunk) : chunk;
    const parts: Uint8Array[] = [];
    let start = 0;
    for (let end = eventEnd(bytes, start); end !== -1; end = eventEnd(bytes, start)) {
      const block = bytes.subarray(start, end);
      if (!this.hidden(block)) parts.push(block);
      start = end;
    }
    this.pending = bytes.slice(start);
    return parts.length === 1 ? parts[0]! : concat(...parts);
  }

  /** What is left at the end of the stream (an unterminated last event), forwarded as it is. */
  end(): Uint8Array {
    const rest = this.pending;
    this.pending = new Uint8Array(0);
    return rest.length > 0 && this.hidden(rest) ? new Uint8Array(0) : rest;
  }

  private hidden(block: Uint8Array): boolean {
    const parser = new SSEParser();
    const events = [...parser.push(block), ...parser.end()];
    return events.length > 0 && events.every(this.hide);
  }
}

/** Index just past the blank line ending the event that starts at `from`, or -1. */
function eventEnd(bytes: Uint8Array, from: number): number {
  for (let i = from; i < bytes.length; i++) {
    const c = bytes[i];
    if (c !== LF && c !== CR) continue;
    // A line ends here; the event ends if the next line is empty.
    let next = i + 1;
    if (c === CR && bytes[next] === LF) next++;
    if (next >= bytes.length) return -1;
    const d = bytes[next];
    if (d === LF) return next + 1;
    if (d === CR) {
      if (next + 1 >= bytes.length) return -1; // may be the first half of a CRLF
      return bytes[next + 1] === LF ? next + 2 : next + 1;
    }
    i = next - 1;
  }
  return -1;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
