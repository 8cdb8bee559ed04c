import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { ensureIdentity, mintToken } from '../emulators/identity.ts';
import { EventFactory, shoot } from './load.ts';
const ready = JSON.parse(readFileSync('/tmp/sp.out', 'utf8').split('\n').find((l) => l.startsWith('{"ready"'))!).ready;
const workers = await (await fetch(`http://127.0.0.1:${ready.ports.functions}/_ldr/workers`)).json();
const id = await ensureIdentity(ready.dataDir);
const f = new EventFactory('x' + Date.now().toString(36), 500);
const insts = await Promise.all([0,1,2,3].map(async (i) => ({ id: `inst-${i}`, token: await mintToken(id, { sub: `app-${i}`, role: 'app', instance: `inst-${i}` }) })));
let rr = 0;
const spread = (n: number) => { const inst = insts[rr++ % insts.length]!; return { token: inst.token, events: Array.from({ length: n }, () => f.event(inst.id, f.randomStudent(inst.id))) }; };
const bl = spawn(process.execPath, ['--import', 'tsx', 'bench/baseline.ts', '0'], { env: { ...process.env, PUBSUB_EMULATOR_HOST: ready.env.PUBSUB_EMULATOR_HOST, GOOGLE_CLOUD_PROJECT: 'demo-ldr' }, stdio: ['ignore', 'pipe', 'inherit'] });
const port = await new Promise<number>((r) => bl.stdout!.on('data', (d) => r(JSON.parse(d.toString()).ready.port)));
const mode = process.argv[2] ?? 'rate';
const targets = [['baseline', `http://127.0.0.1:${port}`], ['ingest', `http://127.0.0.1:${workers.ingestInteraction.port}`]] as const;
for (const [name, url] of targets) {
  for (const [batch, rate] of (mode === 'rate' ? [[1, 200], [1, 200], [1, 1000]] : [[1, 0], [10, 0], [100, 0]]) as Array<[number, number]>) {
    const r = await shoot({ target: name, url, batch, seconds: 5, connections: 32, ...(rate ? { rate } : {}), events: spread });
    console.log(name, batch, rate, Math.round(r.eventsPerSec), 'ev/s p50', r.p50, 'p99', r.p99, JSON.stringify(r.statuses), r.errors);
  }
}
bl.kill();
process.exit(0);
