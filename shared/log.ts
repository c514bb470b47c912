/**
 * Structured logs: one JSON object per line on stdout. Every line carries `component` and, where one
 * exists, the `requestId` that follows an operation from the API call through the queues to the agent
 * and back, so `grep <requestId>` across every process's output shows one operation end to end.
 * Plain console output, because it is what Workers, Lambda (CloudWatch) and Node all collect as is.
 */
export type LogFields = Record<string, unknown>;
export type Level = "debug" | "info" | "warn" | "error";

const LEVELS: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export type LogSink = (line: string) => void;

export function createLogger(base: LogFields, opts: { level?: Level; sink?: LogSink } = {}): Logger {
  const min = LEVELS[opts.level ?? "info"];
  const sink = opts.sink ?? ((line: string) => console.log(line));
  const write = (level: Level, msg: string, fields?: LogFields) => {
    if (LEVELS[level] < min) return;
    sink(JSON.stringify({ ts: new Date().toISOString(), level, msg, ...base, ...fields }, errorReplacer));
  };
  return {
    debug: (m, f) => write("debug", m, f),
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
    child: (fields) => createLogger({ ...base, ...fields }, opts),
  };
}

function errorReplacer(_key: string, value: unknown) {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return { name: value.name, message: value.message, ...(code === undefined ? {} : { code }) };
  }
  return value;
}

/** A logger that drops everything (tests that do not read logs). */
export const silentLogger: Logger = createLogger({}, { sink: () => {} });
