/**
 * Passes an upstream body to the client chunk by chunk and lets an observer see each chunk as it
 * is handed on. Nothing is buffered, so backpressure from a slow client reaches the upstream, and
 * it knows why the stream ended.
 */
export type StreamEnd = { kind: "done" } | { kind: "upstream_error"; error: unknown } | { kind: "cancel" };

export interface StreamObserver {
  /** Sees each upstream chunk before it is passed on; a promise it returns holds the chunk back until it settles. */
  chunk(bytes: Uint8Array): void | Promise<unknown>;
  /**
   * If given, this runs (awaited) once the upstream's body has ended, before the client's does:
   * what must happen before the client has all of it (its final record) happens first. Every
   * chunk is passed on as it arrives; only the end waits (the client's body is chunked, so it
   * knows it has all of it only at the end).
   */
  beforeLast?(): void | Promise<unknown>;
  /**
   * Told when the stream starts waiting for the upstream's next chunk (true) and when it has it
   * (false): the time between is the upstream's silence. Writing to a client that reads slowly is
   * not (the upstream is not read meanwhile, by design).
   */
  awaitingUpstream?(waiting: boolean): void;
  end(end: StreamEnd): void;
}

/** What a stream broken off by its upstream is closed with (the call's record has the error itself). */
const brokenOff =
  "agent-attr: an upstream's answer broke off mid-body; the client's connection was closed (the call's audit record has the error)";

export type ChunkReader = Pick<ReadableStreamDefaultReader<Uint8Array>, "read" | "cancel">;

/** Rewrites what the client gets (the observer still sees every upstream byte). */
export interface ChunkFilter {
  push(bytes: Uint8Array): Uint8Array;
  end(): Uint8Array;
}

/**
 * `filter`: see ChunkFilter; without one, every byte is forwarded as it arrived.
 * A Bun "direct" stream: each chunk is written to the client and flushed at once, with no queue in between (measured cheaper per chunk
 * than a pull stream's enqueue); awaiting the write and the flush carries a slow client's
 * backpressure to the upstream read.
 */
export function tapStream(reader: ChunkReader, observer: StreamObserver, filter?: ChunkFilter): ReadableStream<Uint8Array> {
  let ended = false;
  const finish = (end: StreamEnd) => {
    if (ended) return;
    ended = true;
    observer.end(end);
  };
  const cancel = (reason?: unknown) => {
    finish({ kind: "cancel" });
    reader.cancel(reason).catch(() => {});
  };
  /** Writes to the client; false (and the stream ended as a cancel would) if the client is gone. */
  const send = async (controller: ReadableStreamDirectController, bytes: Uint8Array) => {
    try {
      await controller.write(bytes);
      await controller.flush();
      return true;
    } catch {
      cancel();
      return false;
    }
  };
  const source: Bun.DirectUnderlyingSource<Uint8Array> = {
    type: "direct",
    async pull(controller) {
      for (;;) {
        let result: Awaited<ReturnType<typeof reader.read>>;
        observer.awaitingUpstream?.(true);
        try {
          result = await reader.read();
          observer.awaitingUpstream?.(false);
        } catch (error) {
          observer.awaitingUpstream?.(false);
          finish({ kind: "upstream_error", error });
          // Closing with an error breaks the client's connection off, as the upstream's was. Bun
          // prints whatever the stream is closed with, stack and properties included (a fetch
          // error's `path` is the upstream URL with its query): a string prints as itself alone.
          controller.close(brokenOff as unknown as Error);
          return;
        }
        if (ended) return; // the client went away meanwhile
        if (result.done) {
          const rest = filter?.end();
          if (observer.beforeLast) {
            await observer.beforeLast();
            if (ended) return;
          }
          if (rest?.length) await controller.write(rest);
          finish({ kind: "done" });
          controller.close();
          return;
        }
        const out = filter ? filter.push(result.value) : result.value;
        const waiting = observer.chunk(result.value);
        if (waiting) {
          await waiting;
          if (ended) return;
        }
        // A chunk that held only hidden bytes: read on, the client is still waiting.
        if (out.length === 0) continue;
        // The client's side gone without a cancel ends the stream as a cancel would.
        if (!(await send(controller, out))) return;
      }
    },
    cancel,
  };
  return new ReadableStream<Uint8Array>(source);
}
