import { createRuntime } from '../../shared/runtime.ts';
import { registerPendingEvent } from '../../shared/stubs.ts';

registerPendingEvent(createRuntime('mirrorToPartners'));
