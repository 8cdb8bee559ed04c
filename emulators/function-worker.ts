/**
 * One function instance of the local suite: loads functions/<name>/index.ts exactly as the Functions
 * Framework would and serves it on 127.0.0.1:<port>. Usage: function-worker.ts <name> <port>
 */
import type { Server } from 'node:http';
import { getTestServer } from '@google-cloud/functions-framework/testing';
import type { NextFunction, Request, Response } from 'express';
import { createLogger } from '../shared/log.ts';

const [name, portArg] = process.argv.slice(2);
const log = createLogger(`worker:${name}`);
if (!name || !portArg) throw new Error('usage: function-worker.ts <name> <port>');

await import(`../functions/${name}/index.ts`);
const server: Server = getTestServer(name);

// Body-parser failures (malformed JSON, oversized bodies) happen before the function runs; answer them as
// problem+json like every other client error instead of Express's HTML page.
const app = server.listeners('request')[0] as unknown as { use(fn: unknown): void };
app.use((err: { status?: number; type?: string }, _req: Request, res: Response, next: NextFunction) => {
  if (res.headersSent) return next(err);
  const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
  const problem =
    err.type === 'entity.parse.failed'
      ? {
          title: 'Bad Request',
          detail: 'the body is not valid JSON',
          errors: [{ path: '/', message: 'malformed JSON' }],
        }
      : err.type === 'entity.too.large'
        ? { title: 'Content Too Large', detail: 'the body is too large' }
        : {
            title: status === 500 ? 'Internal Server Error' : 'Bad Request',
            detail: 'the request could not be read',
          };
  if (status === 500) log.error({ err }, 'request failed before the function ran');
  res
    .status(status)
    .type('application/problem+json')
    .send(JSON.stringify({ type: 'about:blank', status, ...problem }));
});

server.keepAliveTimeout = 65_000;
server.listen(Number(portArg), '127.0.0.1', () => log.info({ port: Number(portArg) }, 'function ready'));
const shutdown = () => server.close(() => process.exit(0));
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
