/**
 * The pure parts of `burrow bundle` (ts/engine/bundle.ts): which mapping and owners each
 * --userns mode gives, which existing directories are refused, and the config.json's shape
 * (namespaces, /sys, devpts's gid=5, capabilities of a non-root user, the image's process).
 * test/integration/bundle.test.ts drives the real thing.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bundlePlan, bundleSpec, checkBundleDir } from '../../ts/engine/bundle';
import { codeOf } from './thrown';
import type { StorageSettings } from '../../ts/storage/store';

const single: StorageSettings = { version: 1, driver: 'overlay', idMode: 'single', uidMap: [[0, 1000, 1]], gidMap: [[0, 1000, 1]] };
const subuid: StorageSettings = { version: 1, driver: 'overlay', idMode: 'subuid', uidMap: [[0, 1000, 1], [1, 100000, 65536]], gidMap: [[0, 1000, 1], [1, 100000, 65536]] };
const root: StorageSettings = { version: 1, driver: 'overlay', idMode: 'root', uidMap: [[0, 0, 4294967295]], gidMap: [[0, 0, 4294967295]] };

describe('bundlePlan: the mapping and owners of each --userns mode', () => {
  it('root maps container 0 to the caller alone, with or without a range, and makes every file the caller\'s', () => {
    for (const s of [single, subuid]) expect(bundlePlan('root', s, 1000, 1000)).toEqual({ userNamespace: true, uidMap: [[0, 1000, 1]], gidMap: [[0, 1000, 1]], user: { uid: 0, gid: 0 }, owners: 'caller' });
  });

  it('keep-id keeps the caller\'s id with container 0 in the range, and needs a range', () => {
    const p = bundlePlan('keep-id', subuid, 1000, 1000);
    expect(p.user).toEqual({ uid: 1000, gid: 1000 });
    expect(p.owners).toBe('caller');
    expect(p.uidMap).toContainEqual([1000, 1000, 1]);
    expect(p.uidMap.some(([c, h]) => c === 0 && h !== 1000)).toBe(true);
    expect(codeOf(() => bundlePlan('keep-id', single, 1000, 1000))).toBe('EUSAGE');
  });

  it("subids is the store's mapping with the image's owners, and needs a range", () => {
    expect(bundlePlan('subids', subuid, 1000, 1000)).toEqual({ userNamespace: true, uidMap: subuid.uidMap, gidMap: subuid.gidMap, owners: 'keep' });
    expect(codeOf(() => bundlePlan('subids', single, 1000, 1000))).toBe('EUSAGE');
  });

  it('host is root\'s only; as root, keep-id is root\'s own id', () => {
    expect(codeOf(() => bundlePlan('host', subuid, 1000, 1000))).toBe('EUSAGE');
    expect(bundlePlan('host', root, 0, 0)).toEqual({ userNamespace: false, uidMap: [], gidMap: [], owners: 'keep' });
    expect(bundlePlan('keep-id', root, 0, 0).uidMap).toEqual([[0, 0, 1]]);
  });
});

describe('checkBundleDir', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-unit-bundle-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('takes a new or empty directory, a bundle only with --force, never anything else', () => {
    expect(checkBundleDir(path.join(tmp, 'new'), false)).toBe('absent');
    fs.mkdirSync(path.join(tmp, 'empty'));
    expect(checkBundleDir(path.join(tmp, 'empty'), false)).toBe('empty');
    fs.mkdirSync(path.join(tmp, 'bundle', 'rootfs'), { recursive: true });
    fs.writeFileSync(path.join(tmp, 'bundle', 'config.json'), '{}');
    expect(codeOf(() => checkBundleDir(path.join(tmp, 'bundle'), false))).toBe('EBUNDLE_EXISTS');
    expect(checkBundleDir(path.join(tmp, 'bundle'), true)).toBe('bundle');
    fs.writeFileSync(path.join(tmp, 'bundle', 'notes.txt'), 'mine');
    expect(codeOf(() => checkBundleDir(path.join(tmp, 'bundle'), true))).toBe('EBUNDLE_EXISTS');
    fs.writeFileSync(path.join(tmp, 'file'), 'x');
    expect(codeOf(() => checkBundleDir(path.join(tmp, 'file'), true))).toBe('EBUNDLE_EXISTS');
  });
});

describe('bundleSpec', () => {
  const image = { Entrypoint: ['/bin/sh', '-c'], Cmd: ['echo hi'], Env: ['FOO=bar'], WorkingDir: '/data' };
  const base = { imageId: 'sha256:x', command: [] as string[], readOnly: false };
  type Spec = { process: { args: string[]; env: string[]; cwd: string; user: object; capabilities: Record<string, string[]> }; root: { readonly: boolean }; mounts: { destination: string; type: string; options?: string[] }[]; linux: { namespaces: { type: string }[]; uidMappings?: unknown } };
  const spec = (p: Partial<Parameters<typeof bundleSpec>[1]>, ic: object = image): Spec =>
    bundleSpec(ic, { ...bundlePlan('root', single, 1000, 1000), user: { uid: 0, gid: 0 }, network: 'host', mode: 'root', ...base, ...p }) as Spec;
  const sys = (s: Spec) => s.mounts.find((m) => m.destination === '/sys')!;
  const pts = (s: Spec) => s.mounts.find((m) => m.destination === '/dev/pts')!;

  it("takes the image's process: Entrypoint + Cmd (a command replaces Cmd), Env with a PATH, WorkingDir", () => {
    const s = spec({});
    expect(s.process.args).toEqual(['/bin/sh', '-c', 'echo hi']);
    expect(s.process.env).toEqual(['FOO=bar', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
    expect(s.process.cwd).toBe('/data');
    expect(spec({ command: ['date'] }).process.args).toEqual(['/bin/sh', '-c', 'date']);
    const warned: string[] = [];
    expect((bundleSpec({}, { ...bundlePlan('root', single, 1000, 1000), user: { uid: 0, gid: 0 }, network: 'host', mode: 'root', ...base }, (m) => warned.push(m)) as Spec).process.args).toEqual([]);
    expect(warned).toHaveLength(1);
  });

  it("the host's network: no network namespace, /sys bound, resolv.conf and hosts bound read-only; none: a namespace and a sysfs", () => {
    const h = spec({});
    expect(h.linux.namespaces.map((n) => n.type)).toEqual(['pid', 'ipc', 'uts', 'mount', 'user']);
    expect(sys(h)).toMatchObject({ type: 'none', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] });
    if (fs.existsSync('/etc/resolv.conf')) expect(h.mounts.find((m) => m.destination === '/etc/resolv.conf')?.options).toContain('ro');
    const n = spec({ network: 'none' });
    expect(n.linux.namespaces.map((x) => x.type)).toContain('network');
    expect(sys(n).type).toBe('sysfs');
    expect(n.mounts.some((m) => m.destination === '/etc/resolv.conf')).toBe(false);
  });

  it('devpts gets gid=5 only where group 5 is mapped; a non-root user only a bounding set; --read-only adds tmpfs', () => {
    expect(pts(spec({})).options).not.toContain('gid=5');
    expect(pts(spec({ ...bundlePlan('subids', subuid, 1000, 1000) })).options).toContain('gid=5');
    expect(pts(spec({ ...bundlePlan('host', root, 0, 0) })).options).toContain('gid=5');
    expect(spec({ ...bundlePlan('host', root, 0, 0) }).linux.uidMappings).toBeUndefined();
    expect(Object.keys(spec({ user: { uid: 1000, gid: 1000 } }).process.capabilities)).toEqual(['bounding']);
    expect(Object.keys(spec({}).process.capabilities).sort()).toEqual(['bounding', 'effective', 'permitted']);
    const ro = spec({ readOnly: true });
    expect(ro.root.readonly).toBe(true);
    expect(ro.mounts.filter((m) => m.type === 'tmpfs').map((m) => m.destination)).toEqual(expect.arrayContaining(['/tmp', '/var/tmp', '/run']));
  });
});
