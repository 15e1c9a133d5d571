// The logger every module receives: structured, levelled, and never handed document text or secrets.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export type LogMeta = Readonly<Record<string, unknown>>;

export interface Logger {
  log(level: LogLevel, message: string, meta?: LogMeta): void;
  child(bindings: LogMeta): Logger;
}

const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** One JSON object per line on stderr; the default outside a TTY and in services. */
export class JsonLogger implements Logger {
  constructor(
    private readonly minLevel: LogLevel = 'info',
    private readonly bindings: LogMeta = {},
    private readonly write: (line: string) => void = (line) => process.stderr.write(line + '\n'),
  ) {}

  log(level: LogLevel, message: string, meta: LogMeta = {}): void {
    if (levelRank[level] < levelRank[this.minLevel]) return;
    this.write(JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...this.bindings, ...meta }));
  }

  child(bindings: LogMeta): Logger {
    return new JsonLogger(this.minLevel, { ...this.bindings, ...bindings }, this.write);
  }
}

/** Discards everything; for library callers that pass no logger. */
export const silentLogger: Logger = {
  log: () => undefined,
  child: () => silentLogger,
};
