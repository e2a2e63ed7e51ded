/**
 * One direction of a proxied WebSocket: frames are delivered in the order they arrived. A delivery
 * may have to wait (a `response.create` waits for its intent to be durable, a terminal event for
 * its final record); the frames behind it queue, and past `maxQueuedBytes` the lane says so, so
 * its source stops reading (TCP backpressure on the sender) until the queue is empty again.
 */
export type Delivery = () => void | Promise<unknown>;

export class FrameLane {
  readonly #queue: { bytes: number; deliver: Delivery }[] = [];
  #queuedBytes = 0;
  #busy = false;
  #full = false;
  #closed = false;

  constructor(
    readonly maxQueuedBytes: number,
    private readonly onFull: () => void,
    private readonly onRoom: () => void,
  ) {}

  /** Delivers now if nothing waits, else after what waits (a push made during a delivery waits for it). */
  push(bytes: number, deliver: Delivery): void {
    if (this.#closed) return;
    if (!this.#busy) {
      this.#drain(deliver);
      return;
    }
    this.#queue.push({ bytes, deliver });
    this.#queuedBytes += bytes;
    if (!this.#full && this.#queuedBytes > this.maxQueuedBytes) {
      this.#full = true;
      this.onFull();
    }
  }

  /** Drops what waits: the connection is over. */
  close(): void {
    this.#closed = true;
    this.#queue.length = 0;
    this.#queuedBytes = 0;
  }

  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Runs deliveries in order until one has to wait (or none is left). */
  #drain(first: Delivery | undefined): void {
    let deliver = first;
    while (deliver && !this.#closed) {
      this.#busy = true;
      let pending: void | Promise<unknown>;
      try {
        pending = deliver();
      } catch {
        pending = undefined; // a delivery guards itself; a throw here must not stall the lane
      }
      if (pending instanceof Promise) {
        const next = () => this.#drain(this.#shift());
        pending.then(next, next);
        return;
      }
      deliver = this.#shift();
    }
    this.#busy = false;
  }

  #shift(): Delivery | undefined {
    const item = this.#queue.shift();
    if (!item) return undefined;
    this.#queuedBytes -= item.bytes;
    if (this.#full && this.#queuedBytes <= this.maxQueuedBytes / 2) {
      this.#full = false;
      this.onRoom();
    }
    return item.deliver;
  }
}
