/**
 * Passes an upstream body to the client chunk by chunk and lets an observer see each chunk as it
 * is handed on. Nothing is buffered, so backpressure from a slow client reaches the upstream, and
 * it knows why the stream ended.
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

/**
 * `filter`: see ChunkFilter; without one, every byte is forwarded as it arrived.
 * A Bun "direct" stream: each chunk is written to the client and flushed at once, with no queue
 * in between (measured cheaper per chunk than a pull stream's enqueue); awaiting the write and
 * the flush carries a slow client's backpressure to the upstream read.
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
  const source: Bun.DirectUnderlyingSource<Uint8Array> = {
    type: "direct",
    async pull(controller) {
      for (;;) {
        let result: Awaited<ReturnType<typeof reader.read>>;
        try {
          result = await reader.read();
        } catch (error) {
          finish({ kind: "upstream_error", error });
          controller.close(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        if (ended) return; // the client went away meanwhile
        if (result.done) {
          const rest = filter?.end();
          if (rest?.length) await controller.write(rest);
          finish({ kind: "done" });
          controller.close();
          return;
        }
        const out = filter ? filter.push(result.value) : result.value;
        observer.chunk(result.value);
        // A chunk that held only hidden bytes: read on, the client is still waiting.
        if (out.length === 0) continue;
        try {
          await controller.write(out);
          await controller.flush();
        } catch {
          // The client's side is gone without a cancel: end as a cancel would.
          return cancel();
        }
      }
    },
    cancel,
  };
  return new ReadableStream<Uint8Array>(source);
}
