import { createRuntime } from '../../shared/runtime.ts';
import { registerPendingHttp } from '../../shared/stubs.ts';

const rt = createRuntime('partnerRoom');
registerPendingHttp(rt, ['pubsub', 'firestore', 'postgres', 'redis']);
