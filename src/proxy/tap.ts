/**
 * Passes an upstream body to the client chunk by chunk and lets an observer see each chunk after it
 * was handed on. Pull-based with no buffer (highWaterMark 0), so backpressure from a slow client
 * reaches the upstream, and it knows why the stream ended.
 */
export type StreamEnd = { kind: "done" } | { kind: "upstream_error"; error: unknown } | { kind: "cancel" };

export interface StreamObserver {
  chunk(bytes: Uint8Array): void;
  end(end: StreamEnd): void;
}

export type ChunkReader = Pick<ReadableStreamDefaultReader<Uint8Array>, "read" | "cancel">;

/** Rewrites what the client gets (the observer still sees every upstream byte). */
export interface ChunkFilter {
  push(bytes: Uint8Array): Uint8Array;
  end(): Uint8Array;
}

/** `filter`: see ChunkFilter; without one, every byte is forwarded as it arrived. */
export function tapStream(reader: ChunkReader, observer: StreamObserver, filter?: ChunkFilter): ReadableStream<Uint8Array> {
  let ended = false;
  const finish = (end: StreamEnd) => {
    if (ended) return;
    ended = true;
    observer.end(end);
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          let result: Awaited<ReturnType<typeof reader.read>>;
          try {
            result = await reader.read();
          } catch (error) {
            finish({ kind: "upstream_error", error });
            controller.error(error);
            return;
          }
          if (result.done) {
            const rest = filter?.end();
            if (rest?.length) controller.enqueue(rest);
            finish({ kind: "done" });
            controller.close();
            return;
          }
          if (!filter) {
            controller.enqueue(result.value);
            observer.chunk(result.value);
            return;
          }
          observer.chunk(result.value);
          const out = filter.push(result.value);
          // A chunk that held only hidden bytes: read on, the client is still waiting.
          if (out.length > 0) return controller.enqueue(out);
        }
      },
      cancel(reason) {
        finish({ kind: "cancel" });
        reader.cancel(reason).catch(() => {});
      },
    },
    { highWaterMark: 0 },
  );
}
