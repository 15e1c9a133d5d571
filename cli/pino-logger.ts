// The Logger of the long-running cluster processes (coordinator, worker): pino JSON lines on stderr, written
// synchronously so the last lines before an exit are not lost, with secrets redacted should one slip into meta.

import { pino, type Logger as Pino } from 'pino';
import type { LogLevel, LogMeta, Logger } from '../contracts/logger.js';

/** Field names whose values never reach a log line. */
const REDACTED = ['password', 'token', 'authorization', '*.password', '*.token', '*.authorization'];

class PinoLogger implements Logger {
  constructor(private readonly pino: Pino) {}

  log(level: LogLevel, message: string, meta: LogMeta = {}): void {
    this.pino[level](meta, message);
  }

  child(bindings: LogMeta): Logger {
    return new PinoLogger(this.pino.child(bindings));
  }
}

export function createPinoLogger(level: LogLevel, bindings: LogMeta = {}): Logger {
  const root = pino(
    {
      level,
      base: { pid: process.pid, ...bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACTED, censor: '***' },
    },
    pino.destination({ fd: 2, sync: true }),
  );
  return new PinoLogger(root);
}
