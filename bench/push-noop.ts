/**
 * The no-op Pub/Sub-triggered function of the per-function CPU bench (bench/push-cpu.ts): registered with
 * the same `registerEventFunction` as the real ones (push-body reading, CloudEvent decoding, log context,
 * router, body guard), with an empty handler. Bundled by esbuild and run under the Functions Framework CLI
 * as the functions are, so its CPU per event is the floor of any function served this way.
 */
import { registerEventFunction } from '../shared/event-function.ts';
import { createLogger } from '../shared/log.ts';
import type { Runtime } from '../shared/runtime.ts';

const name = 'pushNoop';
// only what registerEventFunction touches: no configuration, no client is ever opened
const rt = {
  name,
  log: createLogger(name),
  bus: () => {
    throw new Error('the no-op function publishes nothing');
  },
} as unknown as Runtime;

registerEventFunction(rt, async () => {}, { health: async () => ({}) });
