import pino from 'pino';

/** Structured JSON logs in the shape Cloud Logging understands (severity, message). */
const severity: Record<string, string> = {
  trace: 'DEBUG',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL',
};

export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info') {
  return pino({
    name,
    level,
    messageKey: 'message',
    base: { service: name },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ severity: severity[label] ?? 'DEFAULT' }) },
    redact: {
      paths: ['token', 'authorization', '*.authorization', 'uploadUrl', 'downloadUrl', 'secret'],
      censor: '[redacted]',
    },
  });
}

export type Logger = ReturnType<typeof createLogger>;
