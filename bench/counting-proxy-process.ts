/**
 * The counting proxies (bench/counting-proxy.ts) in a process of their own, so their CPU is neither the
 * suite process's nor the functions': started by bench/suite-process.ts with LDR_COUNTING_CONFIG (JSON:
 * `{ upstreams, labels }`), prints one line `{"ready": {url, ports}}` on stdout, and stops on SIGTERM /
 * SIGINT or when its stdin closes (the suite went away).
 */
import { startCountingProxies, type Upstreams } from './counting-proxy.ts';

const config = JSON.parse(process.env.LDR_COUNTING_CONFIG ?? '{}') as {
  upstreams: Upstreams;
  labels: string[];
};
const proxies = await startCountingProxies(config);
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  void proxies.stop().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
process.stdout.write(`${JSON.stringify({ ready: { url: proxies.url, ports: proxies.ports } })}\n`);
