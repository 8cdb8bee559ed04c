import { createRuntime } from '../../shared/runtime.ts';
import { registerPendingHttp } from '../../shared/stubs.ts';

const rt = createRuntime('progressApi');
registerPendingHttp(rt, ['pubsub', 'firestore', 'postgres', 'redis']);
