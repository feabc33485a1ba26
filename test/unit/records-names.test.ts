/**
 * The store's container names and removal (issue 18, metadata calls per start and removal):
 * the names' directory is made by the first claim only (not re-made per claim or lookup), a
 * removal no longer reads the whole containers directory (what a killed `rm` left aside goes
 * when `ids` reads it), and run files are cleared with one unlink each. Behaviour unchanged.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Containers } from '../../ts/container/records';
import { unlinkIfThere } from '../../ts/storage/fsutil';
import { Store } from '../../ts/storage/store';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-records-names-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const hex = (c: string) => c.repeat(64);
/** Whether the link is there (existsSync follows it to a container directory these tests lack). */
const linked = (p: string) => fs.lstatSync(p, { throwIfNoEntry: false }) !== undefined;

function fresh(tag: string): { store: Store; cs: Containers } {
  const store = new Store(path.join(tmp, tag));
  fs.mkdirSync(store.p('containers'), { recursive: true });
  return { store, cs: new Containers(store) };
}

describe('container names', () => {
  it('the first claim makes the names directory; a taken name fails with Docker\'s words; release frees it', () => {
    const { store, cs } = fresh('claim');
    expect(fs.existsSync(store.p('containers', '.names'))).toBe(false);
    cs.claimName('web', hex('a'));
    expect(fs.readlinkSync(store.p('containers', '.names', 'web'))).toBe(hex('a'));
    cs.claimName('db', hex('b'));
    expect(() => cs.claimName('web', hex('c'))).toThrow(/The container name "\/web" is already in use by container "a{64}"/);
    cs.releaseName('web', hex('c'));
    expect(linked(store.p('containers', '.names', 'web'))).toBe(true);
    cs.releaseName('web', hex('a'));
    expect(linked(store.p('containers', '.names', 'web'))).toBe(false);
    cs.claimName('web', hex('c'));
    expect(fs.readlinkSync(store.p('containers', '.names', 'web'))).toBe(hex('c'));
  });

  it('release and lookup without any names directory make none', () => {
    const { store, cs } = fresh('none');
    cs.releaseName('web', hex('a'));
    expect(() => cs.find('web')).toThrow();
    expect(fs.existsSync(store.p('containers', '.names'))).toBe(false);
  });
});

describe('removal', () => {
  it('removeDir removes only its container; leftovers of a killed rm go when ids reads the directory', () => {
    const { store, cs } = fresh('rm');
    for (const c of ['a', 'b']) fs.mkdirSync(store.p('containers', hex(c), 'upper'), { recursive: true });
    // A dead process's aside copy (pid of a child that has exited), and a live one's (ours: kept).
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }).stdout.trim();
    const deadAside = `.removing-${hex('d')}-${dead}`;
    const liveAside = `.removing-${hex('e')}-${process.pid}`;
    for (const n of [deadAside, liveAside]) fs.mkdirSync(store.p('containers', n, 'x'), { recursive: true });
    cs.removeDir(hex('a'));
    expect(fs.readdirSync(store.p('containers')).sort()).toEqual([deadAside, liveAside, hex('b')].sort());
    expect(cs.ids()).toEqual([hex('b')]);
    expect(fs.readdirSync(store.p('containers')).sort()).toEqual([liveAside, hex('b')].sort());
  });

  it('unlinkIfThere: deletes a file, ignores a missing one, throws on anything else', () => {
    const f = path.join(tmp, 'f');
    fs.writeFileSync(f, 'x');
    unlinkIfThere(f);
    expect(fs.existsSync(f)).toBe(false);
    expect(() => unlinkIfThere(f)).not.toThrow();
    fs.mkdirSync(path.join(tmp, 'd'));
    expect(() => unlinkIfThere(path.join(tmp, 'd'))).toThrow();
  });
});

describe('metadata calls (strace -f -c)', () => {
  it('a claim with the names directory present is one symlink, no mkdir; removeDir reads no directory but its own tree', () => {
    const { store } = fresh('count');
    fs.mkdirSync(store.p('containers', '.names'), { recursive: true });
    fs.mkdirSync(store.p('containers', hex('a')));
    for (let i = 0; i < 50; i++) fs.mkdirSync(store.p('containers', hex(i.toString(16).padStart(2, '0').slice(0, 1)) + i), { recursive: true });
    const mod = path.resolve(__dirname, '../../dist/container/records.js');
    const script = `const { Containers } = require(${JSON.stringify(mod)}); const { Store } = require(${JSON.stringify(path.resolve(__dirname, '../../dist/storage/store.js'))});
const cs = new Containers(new Store(${JSON.stringify(store.root)}));
process.stdout.write('MARK-START\\n'); cs.claimName('n1', ${JSON.stringify(hex('a'))}); cs.removeDir(${JSON.stringify(hex('a'))}); process.stdout.write('MARK-END\\n');`;
    const r = spawnSync('strace', ['-f', '-e', 'trace=write,mkdir,mkdirat,getdents64,symlink,symlinkat', '-o', path.join(tmp, 'trace'), process.execPath, '-e', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const t = fs.readFileSync(path.join(tmp, 'trace'), 'utf8');
    const between = t.slice(t.indexOf('MARK-START'), t.indexOf('MARK-END'));
    expect(between.match(/^\d+\s+symlink/gm)?.length).toBe(1);
    expect(between).not.toMatch(/^\d+\s+mkdir/m);
    // Its own tree (empty) only: one directory read of two getdents64 at most, not the 52 names'.
    expect(between.match(/^\d+\s+getdents64/gm)?.length ?? 0).toBeLessThanOrEqual(2);
  });
});
