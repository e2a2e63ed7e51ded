/**
 * The generated text of a stream, kept to estimate usage when none arrives (a client abort, a
 * broken stream). Most events of a stream carry nothing but a piece of text, and the estimate is
 * rarely needed, so a meter may keep such events unparsed here and have them read, in stream order,
 * only when the text is asked for — or once the unparsed events pass `maxDeferredChars`.
 *
 * What a stream holds here is bounded, however long it runs: at most `maxDeferredChars` of unparsed
 * events and `maxSampleChars` of text. Text past the sample is only counted, and the estimate
 * extrapolates it at the sample's own rate of tokens per character (./pipeline/estimate.ts).
 */
import type { OutputSample } from "../pipeline/context.ts";
import type { SSEEvent } from "./sse.ts";

const maxDeferredChars = 256 * 1024;
/** Text kept verbatim per response for an estimate; the rest is counted, not kept. */
export const maxSampleChars = 16 * 1024;

/** Where a meter's read puts the text it finds. */
export interface TextSink {
  push(piece: string): void;
}

/** The first `maxSampleChars` characters of a text, in order, and how many characters followed. */
export class TextSample implements TextSink {
  /** The pieces kept, in order. */
  readonly parts: string[] = [];
  /** Characters past the sample: counted, not kept. */
  moreChars = 0;
  /** Pieces pushed so far, kept or not: a position in the text. */
  pushed = 0;
  private kept = 0;

  push(piece: string): void {
    this.pushed++;
    const room = maxSampleChars - this.kept;
    if (room <= 0) {
      this.moreChars += piece.length;
    } else if (piece.length <= room) {
      this.parts.push(piece);
      this.kept += piece.length;
    } else {
      this.parts.push(piece.slice(0, room));
      this.kept = maxSampleChars;
      this.moreChars += piece.length - room;
    }
  }

  /** The whole text, or (past the sample) the sample and the length of the rest. */
  result(): string | OutputSample {
    const text = this.parts.join("");
    return this.moreChars === 0 ? text : { text, moreChars: this.moreChars };
  }
}

export class DeferredText {
  /** Text read so far; the deferred events fall between these pieces, by position. */
  pieces = new TextSample();
  private deferred: { at: number; event: SSEEvent }[] = [];
  private deferredChars = 0;

  constructor(private readonly read: (event: SSEEvent, into: TextSink) => void) {}

  /** Keeps an event that only adds text, to be read later. */
  defer(event: SSEEvent): void {
    this.deferred.push({ at: this.pieces.pushed, event });
    this.deferredChars += event.data.length;
    if (this.deferredChars > maxDeferredChars) this.resolve();
  }

  /** Reads the deferred events into the text, in stream order; returns the pieces kept. */
  resolve(): string[] {
    if (this.deferred.length === 0) return this.pieces.parts;
    const before = this.pieces;
    const out = new TextSample();
    let next = 0;
    const replayTo = (at: number) => {
      // Pushes past `before`'s kept parts came after the sample was full: `moreChars` holds them.
      for (; next < at; next++) if (next < before.parts.length) out.push(before.parts[next]!);
    };
    for (const { at, event } of this.deferred) {
      replayTo(at);
      this.read(event, out);
    }
    replayTo(before.pushed);
    out.moreChars += before.moreChars;
    this.pieces = out;
    this.deferred = [];
    this.deferredChars = 0;
    return out.parts;
  }

  /** All the text so far (deferred events read): see TextSample.result. */
  sample(): string | OutputSample {
    this.resolve();
    return this.pieces.result();
  }
}
