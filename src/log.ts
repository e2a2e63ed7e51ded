/**
 * The proxy's log: one line per message, as text (`agent-attr: warning: …`, the default) or as JSON
 * lines (`{"ts","level","msg"}`), filtered by level. Messages interpolate values a client chose
 * (model names, ids, upstream error text), so control characters are escaped here, in the one
 * place every message passes: a newline can never start a forged line, an ESC never reaches a
 * terminal as a sequence. Info goes to stdout, warnings and errors to stderr.
 */
import { z } from "zod";

/** Where the proxy, its plugins and its store write what an operator should read. */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export const logLevels = ["info", "warn", "error"] as const;
export type LogLevel = (typeof logLevels)[number];

export const logSettingsSchema = z
  .object({
    /** `text` (default): `agent-attr: warning: …` lines; `json`: one `{"ts","level","msg"}` object per line. */
    format: z.enum(["text", "json"]).default("text"),
    /** The least severe level written: `info` (everything), `warn`, or `error`. */
    level: z.enum(logLevels).default("info"),
  })
  .strict();
export type LogSettings = z.output<typeof logSettingsSchema>;

export const defaultLogSettings: LogSettings = { format: "text", level: "info" };

/**
 * C0 and C1 controls, DEL, and the Unicode line/paragraph separators and bidi controls (which can
 * make a terminal or log viewer show a line other than the one written).
 */
const unsafe = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const named: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t", "\u001b": "\\x1b" };

/** The text with every control character written as a visible escape (`\n`, `\x1b`, `\u{2028}`). */
export function escapeControl(text: string): string {
  return text.replace(unsafe, (c) => named[c] ?? `\\u{${c.codePointAt(0)!.toString(16).padStart(4, "0")}}`);
}

/** JSON.stringify escapes C0 controls; the rest of `unsafe` is escaped as \uXXXX, still valid JSON. */
function jsonLine(level: LogLevel, message: string, now: Date): string {
  const line = JSON.stringify({ ts: now.toISOString(), level, msg: message });
  return line.replace(unsafe, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

const textPrefix: Record<LogLevel, string> = { info: "agent-attr: ", warn: "agent-attr: warning: ", error: "agent-attr: error: " };

/** Where each level's finished line (without its newline) goes. */
export type LogOutput = Record<LogLevel, (line: string) => void>;

// The console: info on stdout, warn and error on stderr.
const consoleOutput: LogOutput = {
  info: (line) => console.log(line),
  warn: (line) => console.warn(line),
  error: (line) => console.error(line),
};

export function createLogger(
  settings: LogSettings = defaultLogSettings,
  output: LogOutput = consoleOutput,
  clock = () => new Date(),
): Logger {
  const least = logLevels.indexOf(settings.level);
  const write = (level: LogLevel) => {
    if (logLevels.indexOf(level) < least) return () => {};
    return (message: string) =>
      output[level](settings.format === "json" ? jsonLine(level, message, clock()) : textPrefix[level] + escapeControl(message));
  };
  return { info: write("info"), warn: write("warn"), error: write("error") };
}

/**
 * The settings in force: AGENT_ATTR_LOG_FORMAT and AGENT_ATTR_LOG_LEVEL override the config's
 * `server.log`. Throws naming the variable when one holds something else than its options.
 */
export function resolveLogSettings(
  configured: LogSettings = defaultLogSettings,
  env: Record<string, string | undefined> = process.env,
): LogSettings {
  const fromEnv = <S extends z.ZodEnum>(name: string, schema: S): z.output<S> | undefined => {
    const value = env[name];
    if (value === undefined || value === "") return undefined;
    const parsed = schema.safeParse(value);
    if (!parsed.success) throw new Error(`${name} is '${escapeControl(value)}'; set it to one of: ${schema.options.join(", ")}.`);
    return parsed.data;
  };
  return {
    format: fromEnv("AGENT_ATTR_LOG_FORMAT", logSettingsSchema.shape.format.unwrap()) ?? configured.format,
    level: fromEnv("AGENT_ATTR_LOG_LEVEL", logSettingsSchema.shape.level.unwrap()) ?? configured.level,
  };
}
