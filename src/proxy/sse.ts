/**
 * Incremental server-sent-events parser (WHATWG HTML §9.2). It only observes the stream: bytes
 * are forwarded before they are parsed, so a parse problem can never change what a client sees.
 * Handles chunks split anywhere (inside UTF-8 sequences, inside a CRLF), CR/LF/CRLF line ends and
 * multi-line `data:` fields.
 */
export interface SSEEvent {
  /** The `event:` field, or null for the default "message" event. */
  event: string | null;
  /** `data:` lines joined with "\n". */
  data: string;
}

const streaming = { stream: true };

export class SSEParser {
  private readonly decoder = new TextDecoder();
  private buffer = "";
  private dataLines: string[] = [];
  private eventName: string | null = null;

  push(chunk: Uint8Array): SSEEvent[] {
    this.buffer += this.decoder.decode(chunk, streaming);
    return this.drain(false);
  }

  /** End of stream: flushes a last event even if the server omitted the closing blank line. */
  end(): SSEEvent[] {
    this.buffer += this.decoder.decode();
    const events = this.drain(true);
    if (this.buffer.length > 0) {
      this.line(this.buffer, events);
      this.buffer = "";
    }
    this.dispatch(events);
    return events;
  }

  private drain(final: boolean): SSEEvent[] {
    const events: SSEEvent[] = [];
    const text = this.buffer;
    let start = 0;
    if (text.indexOf("\r") === -1) {
      // LF line ends only (what LLM APIs send): let indexOf find them.
      for (let end = text.indexOf("\n"); end !== -1; end = text.indexOf("\n", start)) {
        this.line(start === end ? "" : text.slice(start, end), events);
        start = end + 1;
      }
    } else {
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c !== 10 && c !== 13) continue;
        if (c === 13) {
          // A lone CR at the end of the buffer may be the first half of a CRLF: wait for more.
          if (i === text.length - 1 && !final) break;
          this.line(text.slice(start, i), events);
          if (text.charCodeAt(i + 1) === 10) i++;
        } else {
          this.line(text.slice(start, i), events);
        }
        start = i + 1;
      }
    }
    this.buffer = start === 0 ? text : text.slice(start);
    return events;
  }

  private line(line: string, events: SSEEvent[]): void {
    if (line === "") return this.dispatch(events);
    if (line.startsWith("data: ")) {
      this.dataLines.push(line.slice(6));
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ":" comment
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === "data") this.dataLines.push(value);
    else if (field === "event") this.eventName = value;
  }

  private dispatch(events: SSEEvent[]): void {
    const lines = this.dataLines;
    if (lines.length > 0) {
      events.push({ event: this.eventName, data: lines.length === 1 ? lines[0]! : lines.join("\n") });
      this.dataLines = [];
    }
    this.eventName = null;
  }
}

/** JSON.parse that returns undefined instead of throwing (SSE data and upstream bodies are untrusted). */
export function parseJSON(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
