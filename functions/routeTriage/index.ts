import { readFileSync } from 'node:fs';
import { loadRules } from '../../shared/domain/triage.ts';
import defaultRules from '../../shared/domain/triage-rules.json' with { type: 'json' };
import { registerEventFunction } from '../../shared/event-function.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { createRouteTriage } from './handler.ts';

const rt = createRuntime('routeTriage');
// the bundled table, or TRIAGE_RULES_FILE (read on first use: no I/O at import)
let rules: ReturnType<typeof loadRules> | undefined;
const rulesNow = () => {
  const file = rt.config.TRIAGE_RULES_FILE;
  rules ??= loadRules(file ? JSON.parse(readFileSync(file, 'utf8')) : defaultRules);
  return rules;
};
let route: ReturnType<typeof createRouteTriage> | undefined;

registerEventFunction(rt, async (ev) => {
  route ??= createRouteTriage({ bus: rt.bus(), rules: rulesNow() });
  const d = await route(ev);
  // per event at debug only: the decision itself is published to the triage audit topic
  rt.log.debug({ interactionId: d.interactionId, agent: d.agent, ruleId: d.ruleId }, 'interaction routed');
});
