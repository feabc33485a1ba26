import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BurrowError } from '../../ts/errors';
import { parseUntil } from '../../ts/storage/prune';
import { abandonedPartials, containerRefs, contentSize, writableDir, writerActive } from '../../ts/storage/refs';
import { Store } from '../../ts/storage/store';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-prune-unit-'));
let n = 0;
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function store(): Store {
  const s = new Store(path.join(work, `store-${++n}`));
  s.init();
  return s;
}

/** A pid that no process has (pids are below pid_max). */
function deadPid(): number {
  const max = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  for (let p = max - 1; p > 1; p--) if (!fs.existsSync(`/proc/${p}`)) return p;
  throw new Error('no free pid');
}

describe('until filter values', () => {
  const now = Date.parse('2024-06-01T12:00:00Z');
  it('takes Go durations, Unix times and dates', () => {
    expect(parseUntil('90s', now)).toBe(now - 90_000);
    expect(parseUntil('1h30m', now)).toBe(now - 5_400_000);
    expect(parseUntil('1.5h', now)).toBe(now - 5_400_000);
    expect(parseUntil('1700000000', now)).toBe(1_700_000_000_000);
    expect(parseUntil('2023-11-14T22:13:20Z', now)).toBe(1_700_000_000_000);
  });
  it('refuses anything else as a usage error', () => {
    expect(() => parseUntil('yesterday', now)).toThrow(BurrowError);
    expect(() => parseUntil('10x', now)).toThrow(/invalid until filter/);
  });
});

describe('what containers reference', () => {
  it("reads the image from the record and the layers from the bundle's overlay, with or without a record", () => {
    const s = store();
    const [a, b, c] = ['a', 'b', 'c'].map((x) => x.repeat(64));
    const id1 = '1'.repeat(64);
    const id2 = '2'.repeat(64);
    fs.mkdirSync(s.p('containers', id1, 'bundle'), { recursive: true });
    fs.writeFileSync(s.p('containers', id1, 'record.json'), JSON.stringify({ id: id1, image: `sha256:${'f'.repeat(64)}` }));
    const union = (key: string, l: string[]) => JSON.stringify({ annotations: { [key]: `lowerdir=${l.join(':')},upperdir=/x/upper,workdir=/x/work` } });
    fs.writeFileSync(s.p('containers', id1, 'bundle', 'config.json'), union('run.burrow.rootfs.overlay', [a!, b!]));
    // Being created: a bundle, no record yet (and fuse-overlayfs's annotation).
    fs.mkdirSync(s.p('containers', id2, 'bundle'), { recursive: true });
    fs.writeFileSync(s.p('containers', id2, 'bundle', 'config.json'), union('run.burrow.rootfs.fuse-overlayfs', [c!]));
    const r = containerRefs(s);
    expect([...r.layers].sort()).toEqual([a, b, c]);
    expect(r.images.get(`sha256:${'f'.repeat(64)}`)).toEqual([id1]);
  });
});

describe("a container's own files", () => {
  it('are its upper layer, or its whole root with the copy driver, where its record says', () => {
    expect(writableDir({}, '/s/containers/x')).toBe('/s/containers/x/upper');
    expect(writableDir({ rootfs: { driver: 'overlay', dir: '/local/containers/x' } }, '/s/containers/x')).toBe('/local/containers/x/upper');
    expect(writableDir({ rootfs: { driver: 'copy', dir: '/s/containers/x' } }, '/s/containers/x')).toBe('/s/containers/x/rootfs');
  });
});

describe('writers at work', () => {
  it('are seen from a live process in tmp/ (a running pull marks itself there) or a live half-written blob', () => {
    const s = store();
    expect(writerActive(s)).toBe(false);
    fs.mkdirSync(s.p('tmp', `layer-${deadPid()}-abc`));
    expect(writerActive(s)).toBe(false);
    fs.mkdirSync(s.p('tmp', `layer-${process.ppid}-abc`));
    expect(writerActive(s)).toBe(true);
    fs.rmdirSync(s.p('tmp', `layer-${process.ppid}-abc`));
    // Our own work is not another writer's.
    fs.mkdirSync(s.p('tmp', `prune-${process.pid}-abc`));
    expect(writerActive(s)).toBe(false);
    // A download is a writer's while its pull runs, however old or fresh the file: the owner
    // decides, never the file's age (a pull stopped a second ago left an abandoned one).
    const partial = s.p('blobs', 'sha256', `${'e'.repeat(64)}.partial`);
    fs.writeFileSync(partial, 'x');
    expect(writerActive(s)).toBe(false);
    expect([...abandonedPartials(s).keys()]).toEqual([partial]);
    fs.writeFileSync(s.p('tmp', `pull-${process.ppid}`), 'ref');
    expect(writerActive(s)).toBe(true);
    expect(abandonedPartials(s).size).toBe(0);
    fs.rmSync(s.p('tmp', `pull-${process.ppid}`));
    fs.writeFileSync(s.p('blobs', 'sha256', `${'d'.repeat(64)}.tmp-${process.ppid}-x`), 'x');
    expect(writerActive(s)).toBe(true);
  });
});

describe('content size', () => {
  it('counts regular files, hard links once', () => {
    const d = path.join(work, 'tree');
    fs.mkdirSync(path.join(d, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(d, 'a'), Buffer.alloc(1000));
    fs.linkSync(path.join(d, 'a'), path.join(d, 'sub', 'a2'));
    fs.writeFileSync(path.join(d, 'sub', 'b'), Buffer.alloc(24));
    fs.symlinkSync('a', path.join(d, 'link'));
    expect(contentSize(d)).toBe(1024);
    expect(contentSize(path.join(work, 'missing'))).toBe(0);
  });
});
