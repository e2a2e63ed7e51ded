/**
 * Runs the command line. citty parses leniently (`--prot 23101` is ignored, `--usre alice` too), so
 * this wrapper checks every word against the command's declared arguments before citty runs it:
 * an unknown command or flag, a flag without its value, a flag given twice or a stray argument is
 * a usage error with the closest valid spelling. It also serves `help [COMMAND…]`, `--help`,
 * `version` and `--version` (version, commit and build date: ../version.ts), and turns every
 * error into one message and its exit code (_shared.ts).
 */
import { renderUsage, runCommand, type ArgsDef, type CommandDef } from "citty";
import { versionLine } from "../version.ts";
import { cliLog, exitCodeOf, reportError, UsageError } from "./_shared.ts";

// citty's own definitions are generic in their arguments; this walker only reads them.
type AnyCommand = CommandDef<ArgsDef>;

interface Resolved {
  /** `agent-attr audit export`, as typed. */
  path: string[];
  command: AnyCommand;
  /** The words after the command's name. */
  rest: string[];
}

const isHelp = (word: string) => word === "--help" || word === "-h";

export async function runCommandLine(main: AnyCommand, argv: string[]): Promise<void> {
  const version = (await resolved(main.meta))?.version ?? "unknown";
  try {
    if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v" || argv[0] === "version")) {
      process.stdout.write(`${versionLine()}\n`);
      return;
    }
    if (argv[0] === "help") {
      const target = await resolve(
        main,
        argv.slice(1).filter((word) => !isHelp(word)),
      );
      if (target.rest.length > 0) throw unknownCommand(target, target.rest[0]!);
      return await printUsage(target, version, process.stdout);
    }
    const target = await resolve(main, argv);
    if (target.rest.slice(0, until(target.rest)).some(isHelp)) return await printUsage(target, version, process.stdout);
    const subs = Object.keys(await subCommandsOf(target.command));
    if (subs.length > 0) {
      await printUsage(target, version, process.stderr);
      throw new UsageError(`'${target.path.join(" ")}' needs a command: ${subs.join(", ")}.`);
    }
    checkArguments(target, (await resolved(target.command.args)) ?? {});
    await runCommand(target.command, { rawArgs: target.rest });
  } catch (thrown) {
    const error = citty(thrown, argv);
    reportError(error, cliLog());
    process.exit(exitCodeOf(error));
  }
}

async function resolved<T>(value: T | (() => T) | (() => Promise<T>) | Promise<T> | undefined): Promise<T | undefined> {
  return typeof value === "function" ? await (value as () => T | Promise<T>)() : await value;
}

async function subCommandsOf(command: AnyCommand): Promise<Record<string, AnyCommand>> {
  const subs = (await resolved(command.subCommands)) ?? {};
  const out: Record<string, AnyCommand> = {};
  for (const [name, sub] of Object.entries(subs)) out[name] = (await resolved(sub)) as AnyCommand;
  return out;
}

/** Follows command names from the start of `argv` down to the command that runs. */
async function resolve(main: AnyCommand, argv: string[]): Promise<Resolved> {
  const path = [(await resolved(main.meta))?.name ?? "agent-attr"];
  let command = main;
  let rest = argv;
  for (;;) {
    const subs = await subCommandsOf(command);
    if (Object.keys(subs).length === 0) return { path, command, rest };
    const word = rest[0];
    if (word === undefined || isHelp(word)) return { path, command, rest };
    if (word.startsWith("-"))
      throw new UsageError(`'${path.join(" ")}' takes a command before any option, not '${word}'. Run '${path.join(" ")} --help'.`);
    const sub = subs[word];
    if (!sub) throw unknownCommand({ path, command, rest }, word, Object.keys(subs));
    path.push(word);
    command = sub;
    rest = rest.slice(1);
  }
}

function unknownCommand(at: Resolved, word: string, known: string[] = []): UsageError {
  const hint = closest(word, known);
  const list = known.length > 0 ? ` Commands: ${known.join(", ")}.` : "";
  return new UsageError(`Unknown command '${word}' for '${at.path.join(" ")}'.${hint ? ` Did you mean '${hint}'?` : ""}${list}`);
}

/** Flags that may be given more than once (each `--tag KEY=VALUE` adds a tag); citty hands them over as a list. */
const repeatable = new Set(["tag"]);

/** The index of `--` (everything after it is positional), or the end. */
function until(words: string[]): number {
  const end = words.indexOf("--");
  return end === -1 ? words.length : end;
}

/**
 * Every word must be a declared flag (`--name`, `--name=value`, `--no-name` for booleans) with its
 * value, or one of the declared positional arguments; a flag may be given once (`repeatable` ones more).
 */
function checkArguments({ path, rest }: Resolved, args: ArgsDef): void {
  const command = path.join(" ");
  const help = `Run '${command} --help' for its options.`;
  const flags = new Map(Object.entries(args).filter(([, def]) => def.type !== "positional"));
  const positionals = Object.values(args).filter((def) => def.type === "positional").length;
  const given = new Set<string>();
  let positional = 0;
  const end = until(rest);
  for (let i = 0; i < rest.length; i++) {
    const word = rest[i]!;
    if (i >= end || !word.startsWith("-") || word === "-") {
      if (i === end) continue;
      if (++positional > positionals) throw new UsageError(`'${command}' does not take the argument '${word}'. ${help}`);
      continue;
    }
    const [flag, inline] = word.startsWith("--") ? splitOnce(word.slice(2), "=") : [word.slice(1), undefined];
    const negated = flag.startsWith("no-") && flags.get(flag.slice(3))?.type === "boolean";
    const name = negated ? flag.slice(3) : flag;
    const def = flags.get(name);
    if (!def || (!word.startsWith("--") && name.length > 1)) {
      const hint = closest(name, [...flags.keys()]);
      throw new UsageError(`Unknown option '${word.split("=")[0]}' for '${command}'.${hint ? ` Did you mean '--${hint}'?` : ""} ${help}`);
    }
    if (given.has(name) && !repeatable.has(name)) throw new UsageError(`--${name} is given twice; give it once.`);
    given.add(name);
    if (def.type === "boolean") {
      if (inline !== undefined && inline !== "true" && inline !== "false")
        throw new UsageError(`--${name} is a switch: write --${name} or --no-${name}, not '${word}'.`);
      continue;
    }
    if (inline !== undefined) continue;
    const value = rest[i + 1];
    if (value === undefined || i + 1 >= end || value.startsWith("--")) {
      throw new UsageError(`--${name} needs a value (--${name} VALUE, or --${name}=VALUE for a value starting with '--').`);
    }
    i++;
  }
}

function splitOnce(text: string, separator: string): [string, string | undefined] {
  const at = text.indexOf(separator);
  return at === -1 ? [text, undefined] : [text.slice(0, at), text.slice(at + 1)];
}

/**
 * The known word nearest to `word` by edit distance (adjacent swaps count one), if near enough
 * to be a typo: at most a third of its length (at least 1), compared without case or dashes.
 */
export function closest(word: string, known: readonly string[]): string | null {
  const norm = (s: string) => s.toLowerCase().replaceAll("-", "").replaceAll("_", "");
  let best: { name: string; distance: number } | null = null;
  for (const name of known) {
    const distance = editDistance(norm(word), norm(name));
    if (!best || distance < best.distance) best = { name, distance };
  }
  if (best && best.distance <= Math.max(1, Math.floor(word.length / 3))) return best.name;
  // A cut-short name (`--log` for `--log-db`) is a typo too.
  return (word.length >= 2 && known.find((name) => name.startsWith(word))) || null;
}

/** Optimal string alignment distance (Levenshtein with adjacent transpositions). */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

async function printUsage({ path, command }: Resolved, version: string, to: NodeJS.WriteStream): Promise<void> {
  // citty names a command "<parent> <name>"; give it the whole path, and the version.
  const parent = { meta: { name: path.slice(0, -1).join(" "), version } };
  const own = { ...command, meta: { ...((await resolved(command.meta)) ?? {}), name: path.at(-1) } };
  const usage = await renderUsage(own, path.length > 1 ? parent : undefined);
  to.write(`${to.isTTY ? usage : usage.replace(ansi, "")}\n\n`);
}

const ansi = /\u001b\[[0-9;]*m/g;

/** citty's own parse errors (a missing required argument, a value outside an enum) are usage errors. */
function citty(error: unknown, argv: string[]): unknown {
  if (!(error instanceof Error) || error.name !== "CLIError") return error;
  const command = [
    "agent-attr",
    ...argv.filter((word, i) => !word.startsWith("-") && argv.slice(0, i).every((w) => !w.startsWith("-"))),
  ].join(" ");
  const message = error.message.replace(ansi, "").replace(/[^.]$/, "$&.");
  return new UsageError(`${message} Run '${command} --help' for its options.`);
}
