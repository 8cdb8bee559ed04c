/**
 * Retries an operation while its failure is a transient outage of a dependency (connection refused or
 * reset, server shutting down, PostgreSQL class 08 / 57P0x), for at most `budgetMs`. Anything else is
 * thrown at once. Keeps a short outage from spending a message's delivery attempts.
 */
export function isTransient(err: unknown): boolean {
  const e = err as { code?: string | number; message?: string };
  const code = String(e?.code ?? '');
  if (
    ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', '57P01', '57P02', '57P03'].includes(
      code,
    )
  )
    return true;
  if (/^08/.test(code)) return true; // PostgreSQL connection exceptions
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect/i.test(
    e?.message ?? '',
  );
}

export async function retryTransient<T>(
  op: () => Promise<T>,
  opts: { budgetMs: number; onRetry?: (err: unknown, attempt: number) => void },
): Promise<T> {
  const deadline = Date.now() + opts.budgetMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      const wait = Math.min(2000, 100 * 2 ** (attempt - 1));
      if (!isTransient(err) || Date.now() + wait > deadline) throw err;
      opts.onRetry?.(err, attempt);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

/** `p`, or a rejection with Error('timeout') after `ms`; the timer is cleared once `p` settles. */
export function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timeout')), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
