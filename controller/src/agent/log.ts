/**
 * Structured JSON logs, one object per line: `{"ts":"…","level":"info","msg":"…",…fields}`.
 * The sink is injected so tests capture lines and the agent writes to stderr.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Readonly<Record<string, unknown>>;

const RANK: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

export interface JsonLoggerOptions {
  readonly level?: LogLevel;
  /** Receives one complete line (with its newline). */
  readonly write: (line: string) => void;
  readonly now?: () => Date;
}

function serialisable(value: unknown): unknown {
  if (value instanceof Error) return value.message;
  if (typeof value === 'bigint') return value.toString();
  return value;
}

export function jsonLogger(options: JsonLoggerOptions, base: LogFields = {}): Logger {
  const min = RANK[options.level ?? 'info'];
  const now = options.now ?? ((): Date => new Date());
  const emit = (level: LogLevel, msg: string, fields: LogFields | undefined): void => {
    if (RANK[level] < min) return;
    const record: Record<string, unknown> = { ts: now().toISOString(), level, msg };
    for (const [k, v] of Object.entries(base)) record[k] = serialisable(v);
    if (fields !== undefined) for (const [k, v] of Object.entries(fields)) record[k] = serialisable(v);
    options.write(`${JSON.stringify(record)}\n`);
  };
  return {
    debug: (msg, fields) => { emit('debug', msg, fields); },
    info: (msg, fields) => { emit('info', msg, fields); },
    warn: (msg, fields) => { emit('warn', msg, fields); },
    error: (msg, fields) => { emit('error', msg, fields); },
    child: (fields) => jsonLogger(options, { ...base, ...fields }),
  };
}

/** A logger that drops everything (for tests that do not look at logs). */
export const silentLogger: Logger = jsonLogger({ level: 'error', write: () => undefined });

export function isLogLevel(text: string): text is LogLevel {
  return Object.hasOwn(RANK, text);
}
