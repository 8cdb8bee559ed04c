import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import pino from 'pino';

/**
 * Structured JSON logs on stdout in the shape Cloud Logging reads (severity, message,
 * logging.googleapis.com/trace). Every line written inside a request or a delivery carries that
 * request's trace and, for deliveries, the event's ce-id, through an async context.
 */
const severity: Record<string, string> = {
  trace: 'DEBUG',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL',
};

export interface LogContext {
  /** W3C trace id (32 hex) */
  traceId: string;
  /** the W3C traceparent to hand on to derived events */
  traceparent: string;
  ceId?: string;
}

const context = new AsyncLocalStorage<LogContext>();

export const currentContext = () => context.getStore();
export const withContext = <T>(ctx: LogContext, fn: () => T): T => context.run(ctx, fn);

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const CLOUD_TRACE = /^([0-9a-fA-F]{32})(?:\/(\d+))?/;

/** The trace of an incoming request or message: W3C traceparent, else X-Cloud-Trace-Context, else a new one. */
export function traceFrom(traceparent?: string, cloudTrace?: string): LogContext {
  const w3c = traceparent ? TRACEPARENT.exec(traceparent.trim().toLowerCase()) : null;
  if (w3c && !/^0+$/.test(w3c[2]!)) return { traceId: w3c[2]!, traceparent: w3c[0] };
  const gcp = cloudTrace ? CLOUD_TRACE.exec(cloudTrace) : null;
  const traceId = gcp ? gcp[1]!.toLowerCase() : randomBytes(16).toString('hex');
  return { traceId, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` };
}

export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info') {
  const project = process.env.GOOGLE_CLOUD_PROJECT;
  return pino({
    name,
    level,
    messageKey: 'message',
    base: { service: name },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ severity: severity[label] ?? 'DEFAULT' }) },
    mixin() {
      const ctx = context.getStore();
      if (!ctx) return {};
      return {
        'logging.googleapis.com/trace': project ? `projects/${project}/traces/${ctx.traceId}` : ctx.traceId,
        ...(ctx.ceId ? { ceId: ctx.ceId } : {}),
      };
    },
    redact: {
      paths: ['token', 'authorization', '*.authorization', 'uploadUrl', 'downloadUrl', 'secret'],
      censor: '[redacted]',
    },
  });
}

export type Logger = ReturnType<typeof createLogger>;
