/**
 * Start-up (bin/burrow.js): the CLI runs from one bundled file (scripts/bundle.mjs) through a V8
 * code cache in the user's cache directory; a bad or missing cache only costs time; a bundle
 * older than dist/ is never used; BURROW_DEBUG stack traces point into ts/.
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, sh, type Run } from './helpers';
import { IMAGE, setup, type Env } from './lifecycle.helpers';
import pkg from '../../package.json';

describe('start-up', () => {
  let env: Env;
  let cacheHome: string;
  beforeAll(() => {
    env = setup('startup');
    cacheHome = path.join(env.work, 'cache');
  });
  afterAll(() => {
    env?.cleanup();
    env?.dispose();
  });

  /** The CLI with this file's store and a cache directory of its own; BURROW_DEBUG (which bypasses the cache) only when asked. */
  const b = (args: string[], extra: Record<string, string | undefined> = {}, bin = BIN): Run =>
    sh(process.execPath, [bin, '--root', env.store, '--runroot', env.runroot, ...args], { env: { XDG_CACHE_HOME: cacheHome, BURROW_DEBUG: undefined, ...extra } });
  const caches = (): string[] => {
    const dir = path.join(cacheHome, 'burrow');
    return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.v8cache')).map((f) => path.join(dir, f)) : [];
  };

  it("the checkout's bundle is current and pure ASCII", () => {
    const dir = path.join(ROOT, 'dist', 'bundle');
    const m = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as { inputs: [string, number, number][] };
    expect(m.inputs.map(([rel]) => rel)).toContain('../cli/main.js');
    const changed = m.inputs.filter(([rel, size, mtimeMs]) => {
      const st = fs.statSync(path.join(dir, rel), { throwIfNoEntry: false });
      return !st || st.size !== size || st.mtimeMs > mtimeMs;
    });
    expect(changed, 'dist/ changed after bundling: run `npm run build:ts`').toEqual([]);
    expect(/[^\x00-\x7f]/.test(fs.readFileSync(path.join(dir, 'burrow.js'), 'latin1'))).toBe(false);
  });

  it('writes a code cache on first use, keeps it, and lets `run` replace one that another command made', () => {
    fs.rmSync(cacheHome, { recursive: true, force: true });
    expect(b(['images', '-q']).code).toBe(0);
    const [file, ...more] = caches();
    expect(file).toBeDefined();
    expect(more).toEqual([]);
    expect(fs.statSync(file!).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file!)).mode & 0o777).toBe(0o700);
    const byImages = fs.readFileSync(file!);
    expect(byImages[0]).toBe(0); // made by a command other than run
    const ino = fs.statSync(file!).ino;
    expect(b(['images', '-q']).code).toBe(0);
    expect(fs.statSync(file!).ino).toBe(ino); // V8 took it: not written again

    expect(b(['run', '--rm', IMAGE, 'echo', 'hi'])).toMatchObject({ code: 0, stdout: 'hi\n' });
    expect(caches()).toEqual([file]);
    const byRun = fs.readFileSync(file!);
    expect(byRun[0]).toBe(1);
    expect(byRun.length).toBeGreaterThan(byImages.length); // the container code too
    const ino2 = fs.statSync(file!).ino;
    expect(b(['run', '--rm', IMAGE, 'true']).code).toBe(0);
    expect(b(['images', '-q']).code).toBe(0);
    expect(fs.statSync(file!).ino).toBe(ino2); // kept from now on
  });

  it('a corrupt cache or an unusable cache directory costs time, never the command', () => {
    const control = b(['run', '--rm', IMAGE, 'echo', 'hi']);
    expect(control).toMatchObject({ code: 0, stdout: 'hi\n' });
    const [file] = caches();
    const good = fs.readFileSync(file!);
    for (const bad of [Buffer.concat([Buffer.from([1]), crypto.randomBytes(good.length - 1)]), good.subarray(0, 1000), Buffer.alloc(0)]) {
      fs.writeFileSync(file!, bad);
      expect(b(['run', '--rm', IMAGE, 'echo', 'hi'])).toEqual(control);
      // V8 refused it (or there was nothing to refuse) and the run wrote a good one.
      const now = fs.readFileSync(file!);
      expect(now[0]).toBe(1);
      expect(now.length).toBeGreaterThan(1000);
    }
    // A cache that others could have written is not run: replaced by one of this user's own.
    fs.chmodSync(file!, 0o666);
    const ino = fs.statSync(file!).ino;
    expect(b(['run', '--rm', IMAGE, 'echo', 'hi'])).toEqual(control);
    expect(fs.statSync(file!).ino).not.toBe(ino);
    expect(fs.statSync(file!).mode & 0o777).toBe(0o600);
    // No cache directory can be made under a regular file.
    const notDir = path.join(env.work, 'not-a-dir');
    fs.writeFileSync(notDir, '');
    expect(b(['run', '--rm', IMAGE, 'echo', 'hi'], { XDG_CACHE_HOME: notDir })).toEqual(control);
    // A relative XDG_CACHE_HOME is ignored, as the XDG spec says, and without HOME there is no cache.
    expect(b(['run', '--rm', IMAGE, 'echo', 'hi'], { XDG_CACHE_HOME: 'rel', HOME: undefined })).toEqual(control);
    expect(fs.existsSync(path.join(process.cwd(), 'rel'))).toBe(false);
    // A HOME that does not exist (batch systems, /nonexistent) is not made for the cache: as root
    // that was a root-owned /nonexistent/.cache, in another user's way later.
    const noHome = path.join(env.work, 'no-such-home');
    expect(b(['run', '--rm', IMAGE, 'echo', 'hi'], { XDG_CACHE_HOME: undefined, HOME: noHome })).toEqual(control);
    expect(fs.existsSync(noHome)).toBe(false);
  });

  it('a bundle older than dist/ is not used: dist/ runs, so a stale bundle never runs old code', () => {
    // A copy of the package that keeps mtimes (the checkout's bundle stays current for others).
    const copy = path.join(env.work, 'pkg');
    fs.mkdirSync(copy);
    const cp = spawnSync('cp', ['-a', path.join(ROOT, 'bin'), path.join(ROOT, 'dist'), path.join(ROOT, 'package.json'), copy], { encoding: 'utf8' });
    expect(cp.status, cp.stderr).toBe(0);
    for (const d of ['node_modules', 'native', 'target']) fs.symlinkSync(path.join(ROOT, d), path.join(copy, d));
    const bin = path.join(copy, 'bin', 'burrow.js');
    const version = ['version', '--format', '{{.Client.Version}}'];

    fs.rmSync(cacheHome, { recursive: true, force: true });
    expect(b(version, {}, bin)).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
    expect(caches()).toHaveLength(1); // the copy's bundle, through the cache
    const fresh = b(version, { BURROW_DEBUG: '1' }, bin);
    expect(fresh).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
    expect(fresh.stderr).not.toMatch(/loading dist/);

    // A dist file written again (same content, newer mtime), as tsc without the bundle step does.
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(path.join(copy, 'dist', 'errors.js'), later, later);
    fs.rmSync(cacheHome, { recursive: true, force: true });
    const stale = b(version, { BURROW_DEBUG: '1' }, bin);
    expect(stale).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
    expect(stale.stderr).toMatch(/dist\/bundle is missing or older than dist\/.*loading dist\//);
    expect(b(version, {}, bin).code).toBe(0);
    expect(caches()).toEqual([]); // dist/ is loaded by Node's own loader: no cache

    // A changed input is really read from dist/: the bundle has the old version inlined.
    const pj = JSON.parse(fs.readFileSync(path.join(copy, 'package.json'), 'utf8'));
    fs.writeFileSync(path.join(copy, 'package.json'), JSON.stringify({ ...pj, version: '9.8.7-stale' }));
    expect(b(version, {}, bin)).toMatchObject({ code: 0, stdout: '9.8.7-stale\n' });
    // Without its bundle at all, the same.
    fs.rmSync(path.join(copy, 'dist', 'bundle'), { recursive: true });
    expect(b(version, {}, bin)).toMatchObject({ code: 0, stdout: '9.8.7-stale\n' });
  });

  it('BURROW_DEBUG prints a stack trace that points into ts/, and no stack without it', () => {
    const r = b(['tag', 'no-such-image:x', 'y'], { BURROW_DEBUG: '1' });
    expect(r.code).toBe(125);
    const frame = /\n\s+at .*?\(?(\/[^():\s]+\.ts):(\d+):\d+\)?\n/.exec(r.stderr);
    expect(frame, r.stderr).not.toBeNull();
    expect(frame![1]!.startsWith(path.join(ROOT, 'ts') + path.sep)).toBe(true);
    // The frame is where the error was made.
    expect(fs.readFileSync(frame![1]!, 'utf8').split('\n')[Number(frame![2]) - 1]).toMatch(/new BurrowError\(/);
    const plain = b(['tag', 'no-such-image:x', 'y']);
    expect(plain.code).toBe(125);
    expect(plain.stderr).toMatch(/no such image: no-such-image:x/);
    expect(plain.stderr).not.toMatch(/\n\s+at /);
  });

  it('images, ps and inspect do only listing work: no addon, no host probe, no child_process, no registry client, no stdout stream, no ICU collator', () => {
    // The napi addon (which also runs the host probe) fails loudly if anything loads it, and a
    // preload records which of Node's own modules the command loaded: child_process comes with the
    // lifecycle code (and with commander, unless the bundle defers it), http/tls/crypto with the registry client.
    const dir = fs.mkdtempSync(path.join(env.work, 'lean-'));
    const addon = path.join(dir, 'addon.js');
    fs.writeFileSync(addon, "throw new Error('the napi addon was loaded');\n");
    const preload = path.join(dir, 'preload.js');
    const list = path.join(dir, 'loaded.txt');
    // localeCompare's first call loads ICU's collator, which costs as much as the listing itself.
    fs.writeFileSync(
      preload,
      `const lc = String.prototype.localeCompare; let collator = false;
String.prototype.localeCompare = function (...a) { collator = true; return lc.apply(this, a); };
process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(list)}, [...process.moduleLoadList, ...(collator ? ['ICU collator'] : [])].join('\\n')));\n`,
    );
    const id = env.b(['create', '--name', 'lean', IMAGE, 'true']).stdout.trim();
    expect(id).toMatch(/^[a-f0-9]{64}$/);
    // Two of each, so that the listings have something to sort.
    expect(env.b(['create', '--name', 'lean2', IMAGE, 'true']).code).toBe(0);
    expect(env.b(['tag', IMAGE, 'lean-tag:2']).code).toBe(0);
    for (const args of [['images'], ['ps', '-a'], ['inspect', 'lean'], ['inspect', IMAGE]]) {
      const r = b(args, { BURROW_NATIVE: addon, NODE_OPTIONS: `--require ${preload}` });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      const loaded = fs.readFileSync(list, 'utf8').split('\n');
      // Nor a stdout stream (stream, and net for this piped stdout, tty at a terminal): the
      // output is written to fd 1. images and ps need not even node:os (which the network code
      // and the platform check load).
      const re = args[0] === 'inspect' ? /^NativeModule (child_process|http|https|tls|crypto|zlib|stream|net|tty)$/ : /^NativeModule (child_process|http|https|tls|crypto|zlib|stream|net|tty|os)$/;
      const heavy = loaded.filter((m) => re.test(m) || m === 'ICU collator');
      expect(heavy, `burrow ${args.join(' ')} loaded`).toEqual([]);
    }
    env.b(['rm', 'lean', 'lean2']);
    env.b(['rmi', 'lean-tag:2']);
  });

  it('system service runs from a bundle of its own, without the CLI; other shapes of the line go to the CLI', () => {
    // A preload records which files the process read: the service's bundle and never the CLI's
    // (commander and every command), with the code cache the service wrote on its first run.
    const dir = fs.mkdtempSync(path.join(env.work, 'svc-'));
    const preload = path.join(dir, 'preload.js');
    const list = path.join(dir, 'read.txt');
    fs.writeFileSync(
      preload,
      `const fs = require('fs'); const read = fs.readFileSync; const seen = [];
fs.readFileSync = function (p, ...a) { if (typeof p === 'string') seen.push(p); return read.call(this, p, ...a); };
process.on('exit', () => fs.writeFileSync(${JSON.stringify(list)}, seen.join('\\n')));\n`,
    );
    const cache = path.join(dir, 'cache');
    const bundle = (name: string) => path.join(ROOT, 'dist', 'bundle', name);
    let firstIno = 0;
    for (const round of [1, 2]) {
      // --time 1: listens, then exits after a second without requests, status 0.
      const r = b(['system', 'service', '--time', '1', `unix://${path.join(dir, 'api.sock')}`], { XDG_CACHE_HOME: cache, NODE_OPTIONS: `--require ${preload}` });
      expect(r, `round ${round}`).toMatchObject({ code: 0, stderr: '' });
      const read = fs.readFileSync(list, 'utf8').split('\n');
      expect(read).toContain(bundle('service.js'));
      expect(read).not.toContain(bundle('burrow.js'));
      const made = fs.readdirSync(path.join(cache, 'burrow'));
      expect(made).toHaveLength(1);
      expect(made[0]).toMatch(/^svc-[0-9a-f]{32}-.*\.v8cache$/);
      // Round 2 ran with it: V8 took it, and it was not written again.
      const ino = fs.statSync(path.join(cache, 'burrow', made[0]!)).ino;
      if (round === 2) expect(ino).toBe(firstIno);
      firstIno = ino;
    }
    // Help and bad flags are the CLI's, as before.
    const help = b(['system', 'service', '--help'], { XDG_CACHE_HOME: cache });
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: burrow system service \[options\] \[uri\]/);
    expect(b(['system', 'service', '--bogus'], { XDG_CACHE_HOME: cache })).toMatchObject({ code: 125, stderr: "Error: unknown option '--bogus'\n" });
    expect(b(['system', 'service', '--time', 'x'], { XDG_CACHE_HOME: cache })).toMatchObject({ code: 125, stderr: 'Error: invalid --time x: want a number of seconds (0: never exit)\n' });
  });
});
