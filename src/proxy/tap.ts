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

/** `prefix`: chunks already read from `reader` (and already observed) to send first. */
export function tapStream(
  reader: ChunkReader,
  prefix: Uint8Array[],
  observer: StreamObserver,
): ReadableStream<Uint8Array> {
  let ended = false;
  const finish = (end: StreamEnd) => {
    if (ended) return;
    ended = true;
    observer.end(end);
  };
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        for (const chunk of prefix) controller.enqueue(chunk);
      },
      async pull(controller) {
        let result: Awaited<ReturnType<typeof reader.read>>;
        try {
          result = await reader.read();
        } catch (error) {
          finish({ kind: "upstream_error", error });
          controller.error(error);
          return;
        }
        if (result.done) {
          finish({ kind: "done" });
          controller.close();
          return;
        }
        controller.enqueue(result.value);
        observer.chunk(result.value);
      },
      cancel(reason) {
        finish({ kind: "cancel" });
        reader.cancel(reason).catch(() => {});
      },
    },
    { highWaterMark: 0 },
  );
}
