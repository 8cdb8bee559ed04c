/**
 * `npm run example`: serves this page and the built SDK on http://127.0.0.1:5173 (another origin than the
 * room's functions on :5001, as a real frontend would be). Static files only; binds 127.0.0.1.
 */
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const dist = fileURLToPath(new URL('../../client/dist/', import.meta.url));
const port = Number(process.env.PORT ?? 5173);
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.css': 'text/css; charset=utf-8',
};

http
  .createServer(async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const [root, rel] = path.startsWith('/sdk/')
      ? [dist, path.slice(5)]
      : [here, path === '/' ? 'index.html' : path.slice(1)];
    const file = normalize(join(root, rel));
    if (!file.startsWith(root) || file.endsWith('.ts')) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, {
        'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
        'cache-control': 'no-store',
      });
      res.end(body);
    } catch {
      res.writeHead(404).end('not found');
    }
  })
  .listen(port, '127.0.0.1', () => {
    console.log(
      `example on http://127.0.0.1:${port}/  (token: npm run token -- --sub stu-1 --role student --instance app-1)`,
    );
  });
