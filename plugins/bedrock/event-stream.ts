/**
 * Reads AWS's binary event-stream framing (`application/vnd.amazon.eventstream`) as the bytes pass:
 * chunks split anywhere are joined into whole messages (a message opens with its total length,
 * 4 bytes big-endian), and each is decoded — CRCs checked, headers parsed — by the codec the AWS
 * SDKs themselves use (`@smithy/core/event-streams`). It only observes: the client gets the bytes
 * as they came.
 */
import { EventStreamCodec } from "@smithy/core/event-streams";

const utf8Decoder = new TextDecoder();
const utf8Encoder = new TextEncoder();
const codec = new EventStreamCodec(
  (bytes) => utf8Decoder.decode(bytes),
  (text) => utf8Encoder.encode(text),
);

/** One decoded message: its string headers (`:event-type`, `:message-type`, …) and its payload. */
export interface StreamMessage {
  headers: Record<string, string>;
  body: Uint8Array;
}

/** A frame larger than this is not AWS's (its messages are at most 16 MiB): the reader gives up. */
const maxMessageBytes = 16 * 1024 * 1024 + 64 * 1024;

export class EventStreamReader {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private broken = false;

  /** The messages the chunk completes. Throws once, on a frame that cannot be AWS's; then reads nothing more. */
  push(chunk: Uint8Array): StreamMessage[] {
    if (this.broken) return [];
    this.pending.push(chunk);
    this.pendingBytes += chunk.byteLength;
    const messages: StreamMessage[] = [];
    while (this.pendingBytes >= 4) {
      const head = this.peek(4);
      const length = new DataView(head.buffer, head.byteOffset, 4).getUint32(0, false);
      if (length < 16 || length > maxMessageBytes) {
        this.broken = true;
        throw new Error(`an event-stream frame declares ${length} bytes, which no AWS event stream sends`);
      }
      if (this.pendingBytes < length) break;
      try {
        messages.push(decodeMessage(this.take(length)));
      } catch (error) {
        this.broken = true;
        throw error;
      }
    }
    return messages;
  }

  /** The first `n` pending bytes, without consuming them. */
  private peek(n: number): Uint8Array {
    const first = this.pending[0]!;
    if (first.byteLength >= n) return first.subarray(0, n);
    return join(this.pending, this.pendingBytes).subarray(0, n);
  }

  private take(n: number): Uint8Array {
    const all = this.pending.length === 1 ? this.pending[0]! : join(this.pending, this.pendingBytes);
    const message = all.subarray(0, n);
    const rest = all.subarray(n);
    this.pending = rest.byteLength > 0 ? [rest] : [];
    this.pendingBytes = rest.byteLength;
    return message;
  }
}

function join(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

function decodeMessage(bytes: Uint8Array): StreamMessage {
  const message = codec.decode(bytes);
  const headers: Record<string, string> = {};
  for (const [name, header] of Object.entries(message.headers)) {
    if (header.type === "string") headers[name] = header.value;
  }
  return { headers, body: message.body };
}
