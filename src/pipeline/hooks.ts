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
 * A result that is a promise only when some hook answered with one. The runners call hooks that
 * answer synchronously (nearly all: header attribution, pricing) without a promise or a microtask
 * turn per hook, which on every call added up, and await only what is a promise. The order hooks
 * run in and what a throw means are the same either way; a refusal thrown synchronously by a
 * hook is thrown by the runner itself (callers run it inside `try`, or in an async function).
 */
export type MaybePromise<T> = T | Promise<T>;

export function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null | undefined)?.then === "function";
}

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
export function runFirst<P extends Hooked, T>(
  plugins: readonly P[],
  hook: string,
  bind: (plugin: P) => BoundHook<T | null | undefined>,
  onError: OnHookError,
): MaybePromise<{ plugin: P; value: T } | null> {
  for (let i = 0; i < plugins.length; i++) {
    const plugin = plugins[i]!;
    const run = bind(plugin);
    if (!run) continue;
    const value = guarded(plugin.name, hook, run, onError);
    if (isPromiseLike(value)) return firstFrom(plugins, hook, bind, onError, i, value);
    if (value !== null && value !== undefined) return { plugin, value };
  }
  return null;
}

/** `runFirst` from plugin `at` on, once its hook answered with a promise. */
async function firstFrom<P extends Hooked, T>(
  plugins: readonly P[],
  hook: string,
  bind: (plugin: P) => BoundHook<T | null | undefined>,
  onError: OnHookError,
  at: number,
  pending: PromiseLike<T | null | undefined>,
): Promise<{ plugin: P; value: T } | null> {
  const value = await pending;
  if (value !== null && value !== undefined) return { plugin: plugins[at]!, value };
  for (let i = at + 1; i < plugins.length; i++) {
    const plugin = plugins[i]!;
    const run = bind(plugin);
    if (!run) continue;
    const next = await guarded(plugin.name, hook, run, onError);
    if (next !== null && next !== undefined) return { plugin, value: next };
  }
  return null;
}

/**
 * merge: every result folded into `initial`, in order. A null or undefined field overrides
 * nothing; a field holding a plain object (e.g. tags) is merged key by key. A hook is given a copy
 * of what is merged so far.
 */
export function runMerge<P extends Hooked, T extends object>(
  plugins: readonly P[],
  hook: string,
  initial: T,
  bind: (plugin: P) => ((merged: T) => Partial<T> | null | undefined | Promise<Partial<T> | null | undefined>) | undefined,
  onError: OnHookError,
): MaybePromise<T> {
  const merged = { ...initial };
  for (let i = 0; i < plugins.length; i++) {
    const plugin = plugins[i]!;
    const run = bind(plugin);
    if (!run) continue;
    const part = guarded(plugin.name, hook, () => run({ ...merged }), onError);
    if (isPromiseLike(part)) return mergeFrom(plugins, hook, bind, onError, i, part, merged);
    mergeInto(merged, part);
  }
  return merged;
}

/** `runMerge` from plugin `at` on, once its hook answered with a promise. */
async function mergeFrom<P extends Hooked, T extends object>(
  plugins: readonly P[],
  hook: string,
  bind: (plugin: P) => ((merged: T) => Partial<T> | null | undefined | Promise<Partial<T> | null | undefined>) | undefined,
  onError: OnHookError,
  at: number,
  pending: PromiseLike<Partial<T> | null | undefined>,
  merged: T,
): Promise<T> {
  mergeInto(merged, await pending);
  for (let i = at + 1; i < plugins.length; i++) {
    const plugin = plugins[i]!;
    const run = bind(plugin);
    if (run) mergeInto(merged, await guarded(plugin.name, hook, () => run({ ...merged }), onError));
  }
  return merged;
}

function mergeInto<T extends object>(merged: T, part: Partial<T> | null | undefined): void {
  if (!part) return;
  const into = merged as Record<string, unknown>;
  for (const key of Object.keys(part)) {
    const value = (part as Record<string, unknown>)[key];
    if (value === null || value === undefined) continue;
    const before = into[key];
    into[key] = isPlainObject(value) && isPlainObject(before) ? { ...before, ...value } : value;
  }
}

/** sequential: every hook in order, each awaited; with "refuse", the first throw stops the rest. */
export function runSequential<P extends Hooked>(
  plugins: readonly P[],
  hook: string,
  bind: (plugin: P) => BoundHook<unknown>,
  onError: OnHookError,
): MaybePromise<void> {
  for (let i = 0; i < plugins.length; i++) {
    const plugin = plugins[i]!;
    const run = bind(plugin);
    if (!run) continue;
    const done = guarded(plugin.name, hook, run, onError);
    if (isPromiseLike(done)) return sequentialFrom(plugins, hook, bind, onError, i, done);
  }
}

async function sequentialFrom<P extends Hooked>(
  plugins: readonly P[],
  hook: string,
  bind: (plugin: P) => BoundHook<unknown>,
  onError: OnHookError,
  at: number,
  pending: PromiseLike<unknown>,
): Promise<void> {
  await pending;
  for (let i = at + 1; i < plugins.length; i++) {
    const plugin = plugins[i]!;
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
  const pending: unknown[] = [];
  for (const plugin of plugins) {
    const run = bind(plugin);
    if (run) pending.push(guarded(plugin.name, hook, run, { log }));
  }
  await Promise.all(pending);
}

/**
 * Runs one hook under `onError`: with "refuse" a throw (or rejection) is the wrapped error, else
 * it is logged and the result is undefined. A promise only if the hook answered with one.
 */
function guarded<T>(plugin: string, hook: string, run: () => T | Promise<T>, onError: OnHookError): MaybePromise<T | undefined> {
  let value: T | Promise<T>;
  try {
    value = run();
  } catch (error) {
    return failed(plugin, hook, error, onError);
  }
  if (!isPromiseLike(value)) return value;
  return Promise.resolve(value).then(undefined, (error: unknown) => failed(plugin, hook, error, onError));
}

function failed(plugin: string, hook: string, error: unknown, onError: OnHookError): undefined {
  if (onError === "refuse") throw wrap(plugin, hook, error);
  onError.log.error(`[plugin ${plugin}] ${hook}: ${errorMessage(error)}`);
  return undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype;
}
