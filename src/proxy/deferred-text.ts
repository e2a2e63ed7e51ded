/**
 * The generated text of a stream, kept to estimate usage when none arrives (a client abort, a
 * broken stream). Most events of a stream carry nothing but a piece of text, and the estimate is
 * rarely needed, so a meter may keep such events unparsed here and have them read, in stream order,
 * only when the text is asked for — or once the unparsed events pass `maxDeferredChars`, so a long
 * stream holds its text, not its raw events.
 */
import type { SSEEvent } from "./sse.ts";

const maxDeferredChars = 256 * 1024;

export class DeferredText {
  /** Text read so far; the deferred events fall between these pieces, by position. */
  pieces: string[] = [];
  private deferred: { at: number; event: SSEEvent }[] = [];
  private deferredChars = 0;

  constructor(private readonly read: (event: SSEEvent, into: string[]) => void) {}

  /** Keeps an event that only adds text, to be read later. */
  defer(event: SSEEvent): void {
    this.deferred.push({ at: this.pieces.length, event });
    this.deferredChars += event.data.length;
    if (this.deferredChars > maxDeferredChars) this.resolve();
  }

  /** All the text so far, in stream order (reads the deferred events). */
  resolve(): string[] {
    if (this.deferred.length === 0) return this.pieces;
    const out: string[] = [];
    let next = 0;
    for (const { at, event } of this.deferred) {
      while (next < at) out.push(this.pieces[next++]!);
      this.read(event, out);
    }
    while (next < this.pieces.length) out.push(this.pieces[next++]!);
    this.pieces = out;
    this.deferred = [];
    this.deferredChars = 0;
    return out;
  }
}
