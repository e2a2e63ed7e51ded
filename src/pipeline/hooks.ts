/**
 * The kinds of plugin hook, and the one way every hook is called (Rollup names its hook kinds the
 * same way). Plugins run in the order of the config's `plugins` array.
 *
 * | kind       | runs                                          | result                         |
 * |------------|-----------------------------------------------|--------------------------------|
 * | first      | in order, until one returns non-null          | that value, or null            |
 * | merge      | every plugin, in order                        | non-null fields of later results override earlier ones |
 * | sequential | every plugin, in order                        | the first refusal stops the rest |
 * | broadcast  | every plugin                                  | none; each failure is logged   |
 *
 * What a throw means is the stage's `onError`: before the call is forwarded a throw refuses it
 * ("refuse": a `ProxyError` is the refusal the plugin chose, anything else becomes a
 * `plugin_error`); after it (price, record, settle) a throw is logged and the next plugin runs
 * ("log"), because accounting must never touch an answer the client is already receiving.
 */
import { errorMessage, ProxyError } from "../errors.ts";
import { type Logger, PluginError } from "../plugin.ts";

export type HookKind = "first" | "merge" | "sequential" | "broadcast";

/** How a stage treats a hook that throws: refuse the call, or log and go on. */
export type OnHookError = "refuse" | { log: Logger };

/** Something that has hooks: a plugin, or a provider adapter named after its plugin. */
export interface Hooked {
  readonly name: string;
}

/** One plugin's hook bound to this call's arguments, or undefined when the plugin has none. */
export type BoundHook<T> = (() => T | Promise<T>) | undefined;

/**
 * Calls one hook. A `ProxyError` passes through unchanged (a refusal the plugin chose); anything
 * else is wrapped as `[plugin NAME] HOOK: message`.
 */
export async function callHook<T>(plugin: string, hook: string, run: () => T | Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw wrap(plugin, hook, error);
  }
}

/** `callHook` for hooks that must answer synchronously (`provider.match`, `prepareBody`). */
export function callHookSync<T>(plugin: string, hook: string, run: () => T): T {
  try {
    return run();
  } catch (error) {
    throw wrap(plugin, hook, error);
  }
}

function wrap(plugin: string, hook: string, error: unknown): Error {
  if (error instanceof ProxyError || error instanceof PluginError) return error;
  return new PluginError(plugin, hook, error);
}

/** first: the first non-null result, with the plugin that gave it. */
export async function runFirst<P extends Hooked, T>(
  plugins: readonly P[],
  hook: string,
  bind: (plugin: P) => BoundHook<T | null | undefined>,
  onError: OnHookError,
): Promise<{ plugin: P; value: T } | null> {
  for (const plugin of plugins) {
    const run = bind(plugin);
    if (!run) continue;
    const value = await guarded(plugin.name, hook, run, onError);
    if (value !== null && value !== undefined) return { plugin, value };
  }
  return null;
}

/**
 * merge: every result folded into `initial`, in order. A null or undefined field overrides
 * nothing; a field holding a plain object (e.g. tags) is merged key by key.
 */
export async function runMerge<P extends Hooked, T extends object>(
  plugins: readonly P[],
  hook: string,
  initial: T,
  bind: (plugin: P, merged: T) => BoundHook<Partial<T> | null | undefined>,
  onError: OnHookError,
): Promise<T> {
  const merged = { ...initial };
  for (const plugin of plugins) {
    const run = bind(plugin, { ...merged });
    if (!run) continue;
    const part = await guarded(plugin.name, hook, run, onError);
    if (!part) continue;
    for (const [key, value] of Object.entries(part)) {
      if (value === null || value === undefined) continue;
      const before = (merged as Record<string, unknown>)[key];
      Object.assign(merged, { [key]: isPlainObject(value) && isPlainObject(before) ? { ...before, ...value } : value });
    }
  }
  return merged;
}

/** sequential: every hook in order, each awaited; with "refuse", the first throw stops the rest. */
export async function runSequential<P extends Hooked>(
  plugins: readonly P[],
  hook: string,
  bind: (plugin: P) => BoundHook<unknown>,
  onError: OnHookError,
): Promise<void> {
  for (const plugin of plugins) {
    const run = bind(plugin);
    if (run) await guarded(plugin.name, hook, run, onError);
  }
}

/**
 * broadcast: every hook, none awaited by the caller's answer. A hook that throws or rejects is
 * logged; the others still run. Resolves once all have settled.
 */
export async function broadcast<P extends Hooked>(
  plugins: readonly P[],
  hook: string,
  bind: (plugin: P) => BoundHook<unknown>,
  log: Logger,
): Promise<void> {
  const pending: Promise<unknown>[] = [];
  for (const plugin of plugins) {
    const run = bind(plugin);
    if (run) pending.push(guarded(plugin.name, hook, run, { log }));
  }
  await Promise.all(pending);
}

async function guarded<T>(plugin: string, hook: string, run: () => T | Promise<T>, onError: OnHookError): Promise<T | undefined> {
  if (onError === "refuse") return callHook(plugin, hook, run);
  try {
    return await run();
  } catch (error) {
    onError.log.error(`[plugin ${plugin}] ${hook}: ${errorMessage(error)}`);
    return undefined;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype;
}
