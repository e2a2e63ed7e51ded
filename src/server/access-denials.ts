/**
 * Refused audit API calls (401, 403) in the trail, bounded. Refusals are counted, not written one by
 * one: the first refusal opens a window (one minute), and when it closes one `access_denied` chain
 * event carries them all, grouped by what was refused — method, route pattern, status, reason, the
 * role needed, the role of the token sent (a 403), the client address — each group with its count.
 * An event holds at most `maxGroups` groups; refusals of further distinct groups only add to
 * `other_refusals`. So however many requests an attacker sends, the chain grows by at most one
 * event of bounded size a minute. Neither the token nor any hash of it is kept.
 */
import type { ChainEvent } from "../trail/chain.ts";
import { errorMessage } from "../errors.ts";
import type { AccessRefusal } from "./roles.ts";

export interface AccessDenialsOptions {
  /** How long refusals are gathered into one event (ms). */
  windowMs: number;
  /** Distinct groups one event lists at most. */
  maxGroups: number;
}

export const defaultAccessDenials: AccessDenialsOptions = { windowMs: 60_000, maxGroups: 50 };

type Group = AccessRefusal & { client: string | null; count: number };

interface Window {
  since: string;
  groups: Map<string, Group>;
  refusals: number;
  other: number;
}

export class AccessDenials {
  private window: Window | null = null;
  private timer: Timer | undefined;
  private closed = false;

  constructor(
    /** Appends the event to the trail; a rejection keeps the counts for the next attempt. */
    private readonly record: (event: ChainEvent) => Promise<void>,
    private readonly onError: (message: string) => void,
    private readonly options: AccessDenialsOptions = defaultAccessDenials,
  ) {}

  /** Counts one refusal; `client` is the caller's address (null when unknown, e.g. in-process calls). */
  note(refusal: AccessRefusal, client: string | null): void {
    if (this.closed) return;
    const window = this.open();
    window.refusals++;
    const key = JSON.stringify([
      refusal.method,
      refusal.route,
      refusal.status,
      refusal.reason,
      refusal.required_role,
      refusal.presented_role,
      client,
    ]);
    const group = window.groups.get(key);
    if (group) group.count++;
    else if (window.groups.size < this.options.maxGroups) window.groups.set(key, { ...refusal, client, count: 1 });
    else window.other++;
  }

  /** Writes the refusals counted so far as one event (at a window's end, and on shutdown). */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const window = this.window;
    this.window = null;
    if (!window) return;
    const details = {
      since: window.since,
      until: new Date().toISOString(),
      refusals: window.refusals,
      groups: [...window.groups.values()],
      other_refusals: window.other,
    };
    try {
      await this.record({ kind: "access_denied", actor: "api", details });
    } catch (error) {
      const fate = this.closed ? "lost: the proxy is stopping" : "kept for the next attempt";
      this.onError(`cannot record ${window.refusals} refused audit API call(s) in the trail (${fate}): ${errorMessage(error)}`);
      if (!this.closed) this.keep(window);
    }
  }

  /** Writes what is counted and stops counting (shutdown, before the trail closes). */
  close(): Promise<void> {
    this.closed = true;
    return this.flush();
  }

  private open(): Window {
    if (this.window) return this.window;
    this.window = { since: new Date().toISOString(), groups: new Map(), refusals: 0, other: 0 };
    this.timer = setTimeout(() => void this.flush(), this.options.windowMs);
    // Counting refusals must not keep a stopping process alive; shutdown flushes them.
    this.timer.unref();
    return this.window;
  }

  /** Puts a window whose event could not be written back, merged into the current one. */
  private keep(failed: Window): void {
    const window = this.open();
    window.since = failed.since < window.since ? failed.since : window.since;
    window.refusals += failed.refusals;
    window.other += failed.other;
    for (const [key, group] of failed.groups) {
      const current = window.groups.get(key);
      if (current) current.count += group.count;
      else if (window.groups.size < this.options.maxGroups) window.groups.set(key, group);
      else window.other += group.count;
    }
  }
}
