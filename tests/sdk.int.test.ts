import { randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createClient, type IngestResult } from '../client/index.ts';
import { eventually, suite, token } from './helpers.ts';

/**
 * The client SDK (Node) against the running suite: events with client ids delivered once (a resend is a
 * duplicate), an upload through lfsProxy and the storage emulator read back by signed URL, the reads.
 */
const uid = () => randomUUID().replace(/-/g, '').slice(0, 12);

describe('@ldr/client against the local room', () => {
  it('tracks, resends as duplicates, uploads, downloads and reads progress and history', async () => {
    const studentId = `sdk-${uid()}`;
    const tok = await token({ sub: studentId, role: 'student', instance: 'app-sdk' });
    const results: IngestResult['results'] = [];
    const room = createClient({
      baseUrl: suite().functionsBase,
      token: () => tok,
      studentId,
      instanceId: 'app-sdk',
      listen: false,
      onDelivered: (r) => results.push(...r),
      onError: (err) => {
        throw err;
      },
    });
    const ids = [
      await room.track('quiz_answer', { quizId: 'q1', correct: true, score: 1 }, { topic: 'python.loops' }),
      await room.track('exercise_attempt', { exerciseId: 'e1', passed: true }, { topic: 'python.loops' }),
    ];
    expect(await room.flush()).toEqual({ delivered: 2, dropped: 0, remaining: 0 });
    expect(results).toEqual(ids.map((id) => ({ id, status: 'accepted' })));

    // a retry that the client could not see answered: the same ids again are duplicates
    const queued = ids.map((id, i) => ({
      id,
      studentId,
      instanceId: 'app-sdk',
      occurredAt: new Date().toISOString(),
      ...(i === 0
        ? { kind: 'quiz_answer' as const, payload: { quizId: 'q1', correct: true, score: 1 } }
        : { kind: 'exercise_attempt' as const, payload: { exerciseId: 'e1', passed: true } }),
      topic: 'python.loops',
    }));
    await room.send(queued);
    await room.flush();
    expect(results.slice(2)).toEqual(ids.map((id) => ({ id, status: 'duplicate' })));

    const bytes = randomBytes(200_000);
    const progress: number[] = [];
    const { uri } = await room.upload(new Uint8Array(bytes), {
      filename: 'photo.heic',
      contentType: 'image/heic',
      onProgress: (p) => progress.push(p.loaded),
    });
    expect(progress.at(-1)).toBe(bytes.length);
    const { url } = await room.downloadUrl(uri, { timeoutMs: 30_000 });
    expect(Buffer.from(await (await fetch(url)).arrayBuffer()).equals(bytes)).toBe(true);

    const topic = await eventually(
      async () => {
        const p = await room.progress(studentId);
        return p.topics.find((t) => t.topic === 'python.loops' && t.interactions === 2);
      },
      30_000,
      'mastery of both interactions',
    );
    expect(topic.mastery).toBeGreaterThan(0);
    const items = [];
    for await (const page of room.history(studentId, { limit: 1 })) items.push(...page.items);
    expect(items.map((i) => i.id).sort()).toEqual([...ids].sort());
    expect(Array.isArray(await room.alerts(studentId))).toBe(true);
    await room.close();
  }, 90_000);
});
