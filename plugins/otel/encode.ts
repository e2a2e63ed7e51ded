/**
 * The OTLP protobuf encoding of a batch of spans (an ExportTraceServiceRequest), written straight
 * from the ended calls. The official serializer does the same from SDK span objects, but its cost
 * per span was most of what a span cost the proxy (docs/performance.md); here the parts that never
 * change — the resource, the scope, every attribute key — are encoded once, and a span's own
 * fields are written into one growing buffer. The wire format is the protocol's
 * (opentelemetry/proto trace/v1, common/v1): the tests decode it with those definitions.
 */
import { SpanStatusCode } from "@opentelemetry/api";
import type { Resource } from "@opentelemetry/resources";

/** A span, as ./span.ts describes one ended call. */
export interface SpanData {
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  traceState: string | null;
  name: string;
  /** Epoch milliseconds (fractions kept). */
  startMs: number;
  endMs: number;
  status: { code: SpanStatusCode; message?: string };
  attributes: readonly Attribute[];
}

export type Attribute = readonly [key: string, value: string | number | boolean | readonly string[], type?: "int" | "double"];

const spanKindClient = 3;
const encoder = new TextEncoder();

class Writer {
  buf = new Uint8Array(64 * 1024);
  view = new DataView(this.buf.buffer);
  pos = 0;

  reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  varint(value: number): void {
    this.reserve(10);
    let v = value;
    while (v > 127) {
      this.buf[this.pos++] = (v % 128) | 128;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }

  raw(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** A length-delimited string field (`tag` already includes the wire type). */
  string(tag: number, value: string): void {
    this.reserve(1 + 5 + value.length * 3);
    this.buf[this.pos++] = tag;
    let ascii = true;
    for (let i = 0; i < value.length; i++) {
      if (value.charCodeAt(i) > 127) {
        ascii = false;
        break;
      }
    }
    if (ascii) {
      this.varint(value.length);
      for (let i = 0; i < value.length; i++) this.buf[this.pos++] = value.charCodeAt(i);
      return;
    }
    const bytes = encoder.encode(value);
    this.varint(bytes.length);
    this.raw(bytes);
  }

  /** A bytes field from lower-case hex (ids). */
  hex(tag: number, value: string): void {
    this.reserve(2 + value.length / 2);
    this.buf[this.pos++] = tag;
    this.buf[this.pos++] = value.length / 2;
    for (let i = 0; i < value.length; i += 2) this.buf[this.pos++] = (nibble(value.charCodeAt(i)) << 4) | nibble(value.charCodeAt(i + 1));
  }

  fixed64Nanos(tag: number, ms: number): void {
    this.reserve(9);
    this.buf[this.pos++] = tag;
    const whole = Math.floor(ms);
    this.view.setBigUint64(this.pos, BigInt(whole) * 1_000_000n + BigInt(Math.round((ms - whole) * 1e6)), true);
    this.pos += 8;
  }

  /** Starts a length-delimited field; `end` writes its length (1 byte reserved, shifted when longer). */
  start(tag: number): number {
    this.reserve(2);
    this.buf[this.pos++] = tag;
    return this.pos++;
  }

  end(at: number): void {
    const length = this.pos - at - 1;
    if (length < 128) {
      this.buf[at] = length;
      return;
    }
    let extra = 0;
    for (let v = length; v > 127; v = Math.floor(v / 128)) extra++;
    this.reserve(extra);
    this.buf.copyWithin(at + 1 + extra, at + 1, this.pos);
    this.pos += extra;
    let v = length;
    let i = at;
    while (v > 127) {
      this.buf[i++] = (v % 128) | 128;
      v = Math.floor(v / 128);
    }
    this.buf[i] = v;
  }
}

/** The value of one lower-case hex digit. */
const nibble = (c: number) => (c >= 97 ? c - 87 : c - 48);

/** Tags: field number << 3 | wire type (0 varint, 1 fixed64, 2 length-delimited). */
const tag = (field: number, wire: 0 | 1 | 2) => (field << 3) | wire;

/** Each attribute key as KeyValue's field 1, encoded once. */
const keyBytes = new Map<string, Uint8Array>();
function encodedKey(key: string): Uint8Array {
  let bytes = keyBytes.get(key);
  if (!bytes) {
    const w = new Writer();
    w.string(tag(1, 2), key);
    bytes = w.buf.slice(0, w.pos);
    keyBytes.set(key, bytes);
  }
  return bytes;
}

function writeValue(w: Writer, value: Attribute[1], type: Attribute[2]): void {
  if (typeof value === "string") w.string(tag(1, 2), value);
  else if (typeof value === "boolean") {
    w.reserve(2);
    w.buf[w.pos++] = tag(2, 0);
    w.buf[w.pos++] = value ? 1 : 0;
  } else if (typeof value === "number") {
    if (type === "double" || !Number.isInteger(value) || value < 0) {
      w.reserve(9);
      w.buf[w.pos++] = tag(4, 1);
      w.view.setFloat64(w.pos, value, true);
      w.pos += 8;
    } else {
      w.reserve(1);
      w.buf[w.pos++] = tag(3, 0);
      w.varint(value);
    }
  } else {
    const array = w.start(tag(5, 2));
    for (const item of value) {
      const any = w.start(tag(1, 2));
      w.string(tag(1, 2), item);
      w.end(any);
    }
    w.end(array);
  }
}

function writeAttributes(w: Writer, field: number, attributes: readonly Attribute[]): void {
  for (const [key, value, type] of attributes) {
    const kv = w.start(tag(field, 2));
    w.raw(encodedKey(key));
    const any = w.start(tag(2, 2));
    writeValue(w, value, type);
    w.end(any);
    w.end(kv);
  }
}

/** The resource and the scope of every request: encoded once per exporter. */
export function encodedPreamble(resource: Resource, scope: string): { resource: Uint8Array; scope: Uint8Array } {
  const r = new Writer();
  const attributes = Object.entries(resource.attributes).flatMap(([key, value]): Attribute[] =>
    typeof value === "string" || typeof value === "number" || typeof value === "boolean" ? [[key, value]] : [],
  );
  const at = r.start(tag(1, 2));
  writeAttributes(r, 1, attributes);
  r.end(at);
  const s = new Writer();
  const sat = s.start(tag(1, 2));
  s.string(tag(1, 2), scope);
  s.end(sat);
  return { resource: r.buf.slice(0, r.pos), scope: s.buf.slice(0, s.pos) };
}

/** One ExportTraceServiceRequest holding `spans`. */
export function encodeRequest(spans: readonly SpanData[], preamble: { resource: Uint8Array; scope: Uint8Array }): Uint8Array {
  const w = new Writer();
  const resourceSpans = w.start(tag(1, 2));
  w.raw(preamble.resource);
  const scopeSpans = w.start(tag(2, 2));
  w.raw(preamble.scope);
  for (const span of spans) {
    const at = w.start(tag(2, 2));
    w.hex(tag(1, 2), span.traceId);
    w.hex(tag(2, 2), span.spanId);
    if (span.traceState) w.string(tag(3, 2), span.traceState);
    if (span.parentSpanId) w.hex(tag(4, 2), span.parentSpanId);
    w.string(tag(5, 2), span.name);
    w.reserve(2);
    w.buf[w.pos++] = tag(6, 0);
    w.buf[w.pos++] = spanKindClient;
    w.fixed64Nanos(tag(7, 1), span.startMs);
    w.fixed64Nanos(tag(8, 1), span.endMs);
    writeAttributes(w, 9, span.attributes);
    if (span.status.code !== SpanStatusCode.UNSET) {
      const status = w.start(tag(15, 2));
      if (span.status.message) w.string(tag(2, 2), span.status.message);
      w.reserve(2);
      w.buf[w.pos++] = tag(3, 0);
      w.buf[w.pos++] = span.status.code;
      w.end(status);
    }
    w.end(at);
  }
  w.end(scopeSpans);
  w.end(resourceSpans);
  return w.buf.slice(0, w.pos);
}
