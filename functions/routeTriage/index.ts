import { readFileSync } from 'node:fs';
import { loadRules } from '../../shared/domain/triage.ts';
import { registerEventFunction } from '../../shared/event-function.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { createRouteTriage } from './handler.ts';

const rt = createRuntime('routeTriage');
const rulesFile =
  process.env.TRIAGE_RULES_FILE ?? new URL('../../shared/domain/triage-rules.json', import.meta.url);
const rules = loadRules(JSON.parse(readFileSync(rulesFile, 'utf8')));
const route = createRouteTriage({ bus: rt.bus(), rules });

registerEventFunction(rt, async (ev) => {
  const d = await route(ev);
  rt.log.info({ interactionId: d.interactionId, agent: d.agent, ruleId: d.ruleId }, 'interaction routed');
});
