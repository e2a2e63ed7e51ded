/** Another connection holding the audit database's write lock (BEGIN IMMEDIATE), from a Worker. */
import type { LockRequest } from "./lock-holder.ts";

export interface HeldLock {
  /** True once the holder has started to release the lock (it commits right after). */
  isReleased(): boolean;
  /** Resolves once the lock is released and the holder gone. */
  done: Promise<void>;
}

/** Resolves once the lock is taken; it is held for `holdMs`. */
export async function holdWriteLock(path: string, holdMs: number): Promise<HeldLock> {
  const released = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(new URL("./lock-holder.ts", import.meta.url).href);
  const answers: string[] = [];
  let onAnswer = () => {};
  worker.onmessage = (event: MessageEvent<string>) => (answers.push(event.data), onAnswer());
  const answered = (what: string) =>
    new Promise<void>((resolve) => {
      onAnswer = () => answers.includes(what) && resolve();
      onAnswer();
    });
  worker.postMessage({ path, holdMs, released: released.buffer as SharedArrayBuffer } satisfies LockRequest);
  await answered("locked");
  return {
    isReleased: () => Atomics.load(released, 0) === 1,
    done: answered("released").then(() => worker.terminate()),
  };
}
