// The proxy's logger: every message is one line whatever it interpolates, as text or JSON lines,
// filtered by level; AGENT_ATTR_LOG_FORMAT / AGENT_ATTR_LOG_LEVEL override the config.
import { expect, test } from "bun:test";
import { createLogger, escapeControl, resolveLogSettings } from "../src/log.ts";

function capture(settings: Parameters<typeof createLogger>[0]) {
  const lines: { stream: "stdout" | "stderr"; line: string }[] = [];
  const to = (stream: "stdout" | "stderr") => (line: string) => void lines.push({ stream, line: `${line}\n` });
  const log = createLogger(
    settings,
    { info: to("stdout"), warn: to("stderr"), error: to("stderr") },
    () => new Date("2026-01-02T03:04:05.000Z"),
  );
  return { log, lines };
}

const hostile = "gpt-4o\nagent-attr: error: FORGED\r\u001b[2J\u009b31m\u2028\u202eevil\u0000";

test("text: a newline, CR, ESC, C1, line separator or bidi control in a message cannot start a line or a terminal sequence", () => {
  const { log, lines } = capture({ format: "text", level: "info" });
  log.warn(`no price is known for openai/${hostile}`);
  expect(lines).toHaveLength(1);
  const [{ stream, line }] = lines as [{ stream: string; line: string }];
  expect(stream).toBe("stderr");
  expect(line.endsWith("\n")).toBe(true);
  expect(line.slice(0, -1)).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/);
  expect(line).toBe(
    "agent-attr: warning: no price is known for openai/gpt-4o\\nagent-attr: error: FORGED\\r\\x1b[2J\\u{009b}31m\\u{2028}\\u{202e}evil\\u{0000}\n",
  );
});

test("json: one object per line with ts, level and msg; the message round-trips exactly and no raw control character is written", () => {
  const { log, lines } = capture({ format: "json", level: "info" });
  log.error(hostile);
  log.info("started");
  expect(lines.map((l) => l.stream)).toEqual(["stderr", "stdout"]);
  for (const { line } of lines) {
    expect(line.split("\n")).toHaveLength(2);
    expect(line.slice(0, -1)).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/);
  }
  expect(JSON.parse(lines[0]!.line)).toEqual({ ts: "2026-01-02T03:04:05.000Z", level: "error", msg: hostile });
  expect(JSON.parse(lines[1]!.line)).toEqual({ ts: "2026-01-02T03:04:05.000Z", level: "info", msg: "started" });
});

test("level: warn drops info, error drops warn and info", () => {
  const warn = capture({ format: "text", level: "warn" });
  warn.log.info("a");
  warn.log.warn("b");
  warn.log.error("c");
  expect(warn.lines.map((l) => l.line)).toEqual(["agent-attr: warning: b\n", "agent-attr: error: c\n"]);
  const error = capture({ format: "text", level: "error" });
  error.log.info("a");
  error.log.warn("b");
  error.log.error("c");
  expect(error.lines.map((l) => l.line)).toEqual(["agent-attr: error: c\n"]);
});

test("the environment overrides the config's server.log, and a wrong value names the variable and the choices", () => {
  expect(resolveLogSettings({ format: "text", level: "info" }, { AGENT_ATTR_LOG_FORMAT: "json" })).toEqual({
    format: "json",
    level: "info",
  });
  expect(resolveLogSettings({ format: "json", level: "warn" }, { AGENT_ATTR_LOG_LEVEL: "error" })).toEqual({
    format: "json",
    level: "error",
  });
  expect(resolveLogSettings({ format: "json", level: "warn" }, {})).toEqual({ format: "json", level: "warn" });
  expect(() => resolveLogSettings(undefined, { AGENT_ATTR_LOG_LEVEL: "debug" })).toThrow(
    "AGENT_ATTR_LOG_LEVEL is 'debug'; set it to one of: info, warn, error.",
  );
});

test("escapeControl leaves ordinary text, including non-ASCII, as it is", () => {
  expect(escapeControl("josé → 東京 ok")).toBe("josé → 東京 ok");
});
