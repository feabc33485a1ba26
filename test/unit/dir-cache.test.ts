import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { dirReader, enableDirCache } from '../../ts/container/dir-cache';
import { containerState, procStartTime } from '../../ts/container/state';
import type { ContainerRecord } from '../../ts/container/records';
import { listContainers } from '../../ts/engine/list';
import { writeFileAtomic, writeJsonAtomic } from '../../ts/storage/fsutil';
import { Store } from '../../ts/storage/store';

// A short racy window, so that the tests can wait until a directory is old enough to be cached.
const WINDOW = 300;
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, WINDOW + 150));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-dir-cache-'));
const children: ChildProcess[] = [];

afterEach(() => enableDirCache(false));
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('the container-file cache of the service (ts/container/dir-cache.ts)', () => {
  it('off (the CLI): every read is live', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'off-'));
    fs.writeFileSync(path.join(dir, 'f'), 'a');
    expect(dirReader(dir).key).toBeUndefined();
    expect(dirReader(dir).text('f')).toBe('a');
    fs.writeFileSync(path.join(dir, 'f'), 'b');
    expect(dirReader(dir).text('f')).toBe('b');
    expect(dirReader(dir).text('missing')).toBeUndefined();
  });

  it('on: files of an unchanged directory are read once; a file renamed in, created or removed is seen at once', async () => {
    enableDirCache(true, WINDOW);
    const dir = fs.mkdtempSync(path.join(tmp, 'on-'));
    writeFileAtomic(path.join(dir, 'f'), 'a');
    await settle();
    const r = dirReader(dir);
    expect(r.key).toBeDefined();
    expect(r.text('f')).toBe('a');
    expect(r.exists('sock')).toBe(false);
    // Written in place, the directory does not change: the cached text stays (which is why
    // only files replaced by rename go through the cache). This shows that it is a cache.
    fs.writeFileSync(path.join(dir, 'f'), 'b');
    expect(dirReader(dir).text('f')).toBe('a');
    // Replaced by a rename (as every writer of these files does): seen by the next reader.
    writeFileAtomic(path.join(dir, 'f'), 'c');
    expect(dirReader(dir).text('f')).toBe('c');
    await settle();
    expect(dirReader(dir).key).toBeDefined();
    expect(dirReader(dir).text('f')).toBe('c');
    fs.writeFileSync(path.join(dir, 'sock'), '');
    expect(dirReader(dir).exists('sock')).toBe(true);
    await settle();
    expect(dirReader(dir).exists('sock')).toBe(true);
    fs.rmSync(path.join(dir, 'sock'));
    expect(dirReader(dir).exists('sock')).toBe(false);
    fs.rmSync(path.join(dir, 'f'));
    expect(dirReader(dir).text('f')).toBeUndefined();
  });

  it('a directory of a file system whose times cannot be trusted (NFS, FUSE, here sysfs) is read live', () => {
    enableDirCache(true, WINDOW);
    const dir = '/sys/kernel';
    // Old enough to be cached on a local file system: the file system alone decides.
    expect(fs.statSync(dir).ctimeMs).toBeLessThan(Date.now() - 10 * WINDOW);
    expect(dirReader(dir).key).toBeUndefined();
  });

  it('a directory that changed within the racy window is not cached (a change in the same clock tick would not show)', () => {
    enableDirCache(true, 60_000);
    const dir = fs.mkdtempSync(path.join(tmp, 'racy-'));
    writeFileAtomic(path.join(dir, 'f'), 'a');
    const r = dirReader(dir);
    expect(r.key).toBeUndefined();
    expect(r.text('f')).toBe('a');
    fs.writeFileSync(path.join(dir, 'f'), 'b');
    expect(dirReader(dir).text('f')).toBe('b');
  });
});

/** A process that stands for a container's init: alive until the test kills it. */
function init(): { pid: number; startTime: number; kill: () => Promise<void> } {
  const c = spawn('sleep', ['600'], { stdio: 'ignore' });
  children.push(c);
  const pid = c.pid!;
  return {
    pid,
    startTime: procStartTime(pid)!,
    kill: () =>
      new Promise((resolve) => {
        c.once('exit', () => resolve());
        c.kill('SIGKILL');
      }),
  };
}

describe("listing containers through the cache: every change of a container's files or of its init shows in the next list", () => {
  it('an exit, a start, a rename, a new run of an exited container, and an init that died without any file changing', async () => {
    enableDirCache(true, WINDOW);
    const store = new Store(path.join(tmp, 'store'));
    store.init();
    const runRoot = path.join(tmp, 'run');
    const dirOf = (id: string): string => path.join(store.root, 'containers', id);
    const rtDir = (id: string): string => path.join(runRoot, id);
    const record = (id: string, name: string, created: string): void => {
      writeJsonAtomic(path.join(dirOf(id), 'record.json'), { id, name, created, image: 'a'.repeat(64), imageName: 'img', command: ['sleep', '600'], labels: {}, runtimeRoot: runRoot, mounts: [], network: 'none' });
    };
    const runtime = (id: string, i: { pid: number; startTime: number }, created: boolean): void => {
      fs.mkdirSync(rtDir(id), { recursive: true });
      writeFileAtomic(path.join(rtDir(id), 'state.json'), JSON.stringify({ id, pid: i.pid, initStartTime: i.startTime, created: new Date().toISOString(), cgroups: null }));
      if (created) fs.writeFileSync(path.join(rtDir(id), 'start.sock'), '');
    };
    const started = (id: string): void => writeFileAtomic(path.join(dirOf(id), 'started'), new Date().toISOString());
    const exited = (id: string, code: number): void => writeFileAtomic(path.join(dirOf(id), 'exit.json'), JSON.stringify({ exitCode: code, finishedAt: new Date().toISOString() }));
    const [a, b, c] = ['a', 'b', 'c'].map((x) => x.repeat(64)) as [string, string, string];
    for (const [id, name, t] of [[a, 'one', '2026-01-01T00:00:01Z'], [b, 'two', '2026-01-01T00:00:02Z'], [c, 'three', '2026-01-01T00:00:03Z']] as const) {
      fs.mkdirSync(dirOf(id), { recursive: true });
      record(id, name, t);
    }
    const initA = init();
    runtime(a, initA, false);
    started(a);
    const initB = init();
    runtime(b, initB, true);
    started(c);
    exited(c, 3);
    const list = (): Record<string, string> =>
      Object.fromEntries(listContainers({ store }, { all: true }).map((e) => [e.rec.name, e.state.status === 'exited' ? `exited ${e.state.exitCode}` : e.status]));

    await settle();
    expect(list()).toEqual({ one: 'running', two: 'created', three: 'exited 3' });
    // Served from the cache now: the same.
    expect(list()).toEqual({ one: 'running', two: 'created', three: 'exited 3' });
    expect(dirReader(dirOf(a)).key).toBeDefined();

    // The holder records A's exit; B is started (its start socket goes, the holder writes
    // `started`); C is renamed (its record replaced).
    await initA.kill();
    exited(a, 7);
    fs.rmSync(path.join(rtDir(b), 'start.sock'));
    started(b);
    record(c, 'renamed', '2026-01-01T00:00:03Z');
    expect(list()).toEqual({ one: 'exited 7', two: 'running', renamed: 'exited 3' });

    // Cached again; then A runs again (its run files cleared, a new init), and B's init dies
    // while nothing holds it: no file changes, /proc alone tells.
    await settle();
    expect(list()).toEqual({ one: 'exited 7', two: 'running', renamed: 'exited 3' });
    for (const f of ['exit.json', 'started']) fs.rmSync(path.join(dirOf(a), f));
    runtime(a, init(), false);
    started(a);
    await initB.kill();
    expect(list()).toEqual({ one: 'running', two: 'exited 255', renamed: 'exited 3' });

    // A removed container goes from the list (and from the cache).
    await settle();
    fs.rmSync(dirOf(c), { recursive: true });
    expect(list()).toEqual({ one: 'running', two: 'exited 255' });
  });
});

describe("a running container's paused check (ts/engine/list.ts)", () => {
  it('is asked of its cgroup only when the runtime placed it in cgroups of its own, as burrow-runtime state judges it', () => {
    const runRoot = fs.mkdtempSync(path.join(tmp, 'placed-'));
    const dir = fs.mkdtempSync(path.join(tmp, 'ctr-'));
    writeFileAtomic(path.join(dir, 'started'), new Date().toISOString());
    const i = init();
    const rec = { id: 'd'.repeat(64), runtimeRoot: runRoot } as ContainerRecord;
    fs.mkdirSync(path.join(runRoot, rec.id));
    const placed = (cgroups: unknown): boolean | undefined => {
      const st: Record<string, unknown> = { id: rec.id, pid: i.pid, initStartTime: i.startTime, created: new Date().toISOString() };
      if (cgroups !== 'absent') st.cgroups = cgroups;
      writeFileAtomic(path.join(runRoot, rec.id, 'state.json'), JSON.stringify(st));
      const s = containerState(rec, dir);
      expect(s.status).toBe('running');
      return s.cgroups;
    };
    expect(placed(null)).toBe(false);
    expect(placed({ v2: true, dirs: ['/sys/fs/cgroup/x'] })).toBe(true);
    // A state file without the field (an older runtime): unknown, so the cgroup is looked at.
    expect(placed('absent')).toBe(true);
  });
});
