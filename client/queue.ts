/**
 * The SDK's offline queue: events wait here, in order, until the room answered for them. Pluggable:
 * IndexedDB in browsers, a JSON file in Node, memory anywhere. Every store keys events by their id, so
 * adding an event twice keeps one.
 */
import type { Interaction } from './types.ts';

export interface QueuedEvent {
  /** the event's id (also `event.id`) */
  id: string;
  event: Interaction & { id: string };
  /** ms since the epoch, when it was queued */
  queuedAt: number;
}

export interface QueueStore {
  /** every queued event, oldest first */
  load(): Promise<QueuedEvent[]>;
  add(events: QueuedEvent[]): Promise<void>;
  remove(ids: string[]): Promise<void>;
}

/** Lost when the process or page goes away. */
export function memoryQueue(): QueueStore {
  const items = new Map<string, QueuedEvent>();
  return {
    async load() {
      return [...items.values()];
    },
    async add(events) {
      for (const e of events) if (!items.has(e.id)) items.set(e.id, e);
    },
    async remove(ids) {
      for (const id of ids) items.delete(id);
    },
  };
}

/**
 * Node: the queue as one JSON file, rewritten atomically (temporary file + rename) on every change.
 * Operations run one after another, so concurrent calls never lose an update.
 */
export function fileQueue(path: string): QueueStore {
  let chain: Promise<unknown> = Promise.resolve();
  let cache: Map<string, QueuedEvent> | undefined;
  const fs = () => import('node:fs/promises');
  const read = async () => {
    if (cache) return cache;
    const { readFile } = await fs();
    let list: QueuedEvent[] = [];
    try {
      list = JSON.parse(await readFile(path, 'utf8')) as QueuedEvent[];
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') throw err;
    }
    cache = new Map(list.map((e) => [e.id, e]));
    return cache;
  };
  const write = async (items: Map<string, QueuedEvent>) => {
    const { writeFile, rename } = await fs();
    const tmp = `${path}.${Date.now()}.${Math.random().toString(36).slice(2)}.tmp`;
    await writeFile(tmp, JSON.stringify([...items.values()]), { mode: 0o600 });
    await rename(tmp, path);
  };
  const serial = <T>(op: () => Promise<T>): Promise<T> => {
    const next = chain.then(op, op);
    chain = next.catch(() => {});
    return next;
  };
  return {
    load: () => serial(async () => [...(await read()).values()]),
    add: (events) =>
      serial(async () => {
        const items = await read();
        for (const e of events) if (!items.has(e.id)) items.set(e.id, e);
        await write(items);
      }),
    remove: (ids) =>
      serial(async () => {
        const items = await read();
        let changed = false;
        for (const id of ids) changed = items.delete(id) || changed;
        if (changed) await write(items);
      }),
  };
}

/** Browsers: an IndexedDB object store keyed by event id; survives reloads and restarts. */
export function indexedDbQueue(name = 'ldr-client', idb: IDBFactory = globalThis.indexedDB): QueueStore {
  const STORE = 'queue';
  let db: Promise<IDBDatabase> | undefined;
  const open = () =>
    (db ??= new Promise<IDBDatabase>((resolve, reject) => {
      const req = idb.open(name, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: 'id' });
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    }));
  const tx = async <T>(mode: IDBTransactionMode, op: (s: IDBObjectStore) => IDBRequest<T> | undefined) => {
    const t = (await open()).transaction(STORE, mode);
    const req = op(t.objectStore(STORE));
    return new Promise<T | undefined>((resolve, reject) => {
      t.oncomplete = () => resolve(req?.result);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error);
    });
  };
  return {
    async load() {
      const all = ((await tx('readonly', (s) => s.getAll())) ?? []) as QueuedEvent[];
      return all.sort((a, b) => a.queuedAt - b.queuedAt || (a.id < b.id ? -1 : 1));
    },
    async add(events) {
      await tx('readwrite', (s) => {
        for (const e of events) s.put(e);
        return undefined;
      });
    },
    async remove(ids) {
      await tx('readwrite', (s) => {
        for (const id of ids) s.delete(id);
        return undefined;
      });
    },
  };
}
