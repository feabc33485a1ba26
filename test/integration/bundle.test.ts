/**
 * `burrow bundle IMAGE DIR` (ts/engine/bundle.ts): an image from the test registry, pulled by
 * the command itself, written as an OCI bundle, then run by burrow-runtime (and, for the default
 * mapping, by Debian's runc) as the same user, as Slurm's oci.conf runs it: output, exit status,
 * environment, working directory and user as the image says; who owns the rootfs's files under
 * each --userns mode; whiteouts applied and set-id bits dropped; the refusals (a non-empty
 * directory, a file, a directory that is not a bundle even with --force, --userns host rootless);
 * and a signal in the middle leaving neither DIR nor its temporary tree.
 * Runs as root and as the unprivileged test user.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, IS_ROOT, ROOT } from './helpers';
import { exec, removeAllSandboxes, sandbox, tmpdir, type Sandbox } from './image-helpers';
import { removeTrees } from '../../ts/storage/unpack';
import { startRegistry, type Registry } from '../harness/registry.mjs';
import { buildImage, pushImage, tarDirectory, type BuiltImage } from '../harness/images.mjs';
import { makeRootfs, RUNTIME, type BundleConfig } from '../harness/bundle.mjs';

const work = fs.mkdtempSync(path.join(tmpdir(), 'burrow-bundle-test-'));
let registry: Registry;
let ref: string;
let sb: Sandbox;
const me = { uid: process.getuid!(), gid: process.getgid!() };
/** Whether the store maps a subordinate range (root's maps every id): known after the first bundle. */
const subids = (): boolean => IS_ROOT || sb.settings().idMode === 'subuid';

/** What the image's Entrypoint + Cmd print: its env, cwd and ids, then exit 7. */
const REPORT = 'echo "FOO=$FOO cwd=$(pwd) id=$(id -u):$(id -g) host=$(hostname)"; exit 7';

/**
 * The test image: busybox (test/harness/bundle.mjs) with a set-uid file, a set-gid directory,
 * /home/app of uid 1000 (mode 0700) and a read-only directory; a second layer whites out
 * /gone.txt. Entrypoint ["/bin/sh", "-c"], Cmd REPORT, Env FOO, WorkingDir /data.
 */
function buildBundleImage(dir: string): BuiltImage {
  const l1 = path.join(work, 'l1');
  const rootfs = makeRootfs(l1);
  const put = (rel: string, text: string, mode: number) => {
    fs.mkdirSync(path.dirname(path.join(rootfs, rel)), { recursive: true });
    fs.writeFileSync(path.join(rootfs, rel), text);
    fs.chmodSync(path.join(rootfs, rel), mode);
  };
  fs.appendFileSync(path.join(rootfs, 'etc', 'passwd'), 'app:x:1000:1000:app:/home/app:/bin/sh\n');
  put('usr/bin/suid-tool', '#!/bin/sh\necho tool\n', 0o4755);
  put('data/readme.txt', 'data\n', 0o644);
  put('home/app/secret.txt', 'only app\n', 0o600);
  fs.chmodSync(path.join(rootfs, 'home', 'app'), 0o700);
  put('gone.txt', 'whited out by layer 2\n', 0o644);
  fs.mkdirSync(path.join(rootfs, 'shared'), { mode: 0o2775 });
  fs.chmodSync(path.join(rootfs, 'shared'), 0o2775);
  fs.mkdirSync(path.join(rootfs, 'ro'));
  put('ro/file', 'x\n', 0o444);
  fs.chmodSync(path.join(rootfs, 'ro'), 0o555);
  const t1 = tarDirectory(rootfs, path.join(work, 'l1.tar'), { 'home/app': [1000, 1000] });
  fs.chmodSync(path.join(rootfs, 'ro'), 0o755);
  const l2 = path.join(work, 'l2');
  fs.mkdirSync(l2);
  fs.writeFileSync(path.join(l2, '.wh.gone.txt'), '');
  fs.writeFileSync(path.join(l2, 'layer2.txt'), 'layer 2\n');
  const t2 = tarDirectory(l2, path.join(work, 'l2.tar'));
  return buildImage(dir, {
    tag: 'v1',
    layers: [
      { tar: t1, compression: 'gzip', comment: 'busybox, set-uid file, owners' },
      { tar: t2, compression: 'gzip', comment: 'a whiteout' },
    ],
    config: { Entrypoint: ['/bin/sh', '-c'], Cmd: [REPORT], Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'FOO=from-the-image'], WorkingDir: '/data' },
  });
}

/** Every entry under `dir` with its owner and mode (lstat), relative paths. */
function entries(dir: string): { rel: string; uid: number; gid: number; mode: number }[] {
  const out: { rel: string; uid: number; gid: number; mode: number }[] = [];
  const walk = (d: string, rel: string) => {
    for (const n of fs.readdirSync(d)) {
      const p = path.join(d, n);
      const st = fs.lstatSync(p);
      out.push({ rel: `${rel}${n}`, uid: st.uid, gid: st.gid, mode: st.mode });
      if (st.isDirectory()) walk(p, `${rel}${n}/`);
    }
  };
  walk(dir, '');
  return out;
}

let n = 0;
/** Runs the bundle with burrow-runtime (or another runc-compatible `runtime`) as this user. */
function runBundle(dir: string, runtime = RUNTIME): Promise<{ code: number; stdout: string; stderr: string }> {
  const state = path.join(sb.dir, `rt-${path.basename(runtime)}`);
  return exec(runtime, ['--root', state, 'run', '--bundle', dir, `bundle-test-${process.pid}-${++n}`], { timeoutMs: 60_000, env: sb.env });
}

/** A bundle's config.json, read as the parts of runtime-spec's config that tests check. */
function config(dir: string): BundleConfig {
  return JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
}

beforeAll(async () => {
  const img = buildBundleImage(path.join(work, 'layout'));
  registry = await startRegistry({ mode: 'anonymous' });
  ref = await pushImage(registry, img, 'test/bundle');
  sb = sandbox(work, 'store');
}, 180_000);

afterAll(async () => {
  // Bundles of --userns subids hold files of subordinate ids: removed in the store's namespace.
  if (sb && fs.existsSync(path.join(sb.root, 'storage.json'))) {
    const s = sb.settings();
    if (s.idMode !== 'root') await removeTrees(s, [work]).catch(() => undefined);
  }
  await removeAllSandboxes();
  await registry?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

describe(`burrow bundle as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('pulls the image, writes config.json and a rootfs every file of which is yours, and burrow-runtime runs it as the image says', async () => {
    const dir = path.join(sb.dir, 'b-root');
    const r = await sb.burrow(['bundle', ref, dir], { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${dir}\n`);
    // Pulled like `run` pulls: the image is in the store now.
    expect((await sb.ok(['images', '-q', ref])).stdout.trim()).not.toBe('');
    expect(fs.readdirSync(dir).sort()).toEqual(['config.json', 'rootfs']);
    const c = config(dir);
    expect(c.process.args).toEqual(['/bin/sh', '-c', REPORT]);
    expect(c.process.env).toContain('FOO=from-the-image');
    expect(c.process.cwd).toBe('/data');
    expect(c.process.user).toEqual({ uid: 0, gid: 0 });
    expect(c.root).toEqual({ path: 'rootfs', readonly: false });
    expect(c.linux.uidMappings).toEqual([{ containerID: 0, hostID: me.uid, size: 1 }]);
    expect(c.linux.gidMappings).toEqual([{ containerID: 0, hostID: me.gid, size: 1 }]);
    expect(c.linux.namespaces.map((x) => x.type).sort()).toEqual(['ipc', 'mount', 'pid', 'user', 'uts']);
    expect(c.hostname).toBeUndefined();
    expect(c.mounts.find((m) => m.destination === '/sys')).toMatchObject({ source: '/sys', options: expect.arrayContaining(['rbind', 'ro']) });
    expect(c.mounts.find((m) => m.destination === '/dev/pts')!.options).not.toContain('gid=5');
    // The mounts of `burrow-runtime spec --rootless` (runc's rootless template), all of them as they are there.
    const tpl = path.join(sb.dir, 'spec-template');
    fs.mkdirSync(tpl);
    const made = await exec(RUNTIME, ['spec', '--rootless', '--bundle', tpl]);
    expect(made.code, made.stderr).toBe(0);
    for (const m of config(tpl).mounts) expect(c.mounts).toContainEqual(m);
    // The rootfs: every entry yours (container root's in this mapping), whiteouts applied,
    // set-uid dropped, directories open to you, set-gid on a directory kept.
    const rootfs = path.join(dir, 'rootfs');
    const all = entries(rootfs);
    expect(all.length).toBeGreaterThan(100);
    expect(all.filter((e) => e.uid !== me.uid || e.gid !== me.gid)).toEqual([]);
    expect(fs.existsSync(path.join(rootfs, 'gone.txt'))).toBe(false);
    expect(fs.readFileSync(path.join(rootfs, 'layer2.txt'), 'utf8')).toBe('layer 2\n');
    expect(fs.statSync(path.join(rootfs, 'usr/bin/suid-tool')).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(path.join(rootfs, 'home/app')).mode & 0o7777).toBe(0o700);
    expect(fs.statSync(path.join(rootfs, 'home/app/secret.txt')).mode & 0o7777).toBe(0o600);
    expect(fs.statSync(path.join(rootfs, 'ro')).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(path.join(rootfs, 'ro/file')).mode & 0o7777).toBe(0o444);
    expect(fs.statSync(path.join(rootfs, 'shared')).mode & 0o7777).toBe(0o2775);
    expect(r.stderr).toContain('1 set-id bit dropped');
    const run = await runBundle(dir);
    expect(run.stdout, run.stderr).toBe(`FOO=from-the-image cwd=/data id=0:0 host=${os.hostname()}\n`);
    expect(run.code).toBe(7);
    // Inside, the files are container root's: no "nobody".
    const inside = await (async () => {
      const d = path.join(sb.dir, 'b-root-ls');
      await sb.ok(['bundle', ref, d, 'stat -c "%u:%g %a" /home/app/secret.txt /bin/busybox; cat /home/app/secret.txt; echo new > /data/new.txt && cat /data/new.txt']);
      return runBundle(d);
    })();
    expect(inside, inside.stderr).toMatchObject({ code: 0, stdout: '0:0 600\n0:0 755\nonly app\nnew\n' });
    // You can remove the bundle with a plain rm -rf, read-only directories and all.
    fs.rmSync(path.join(sb.dir, 'b-root-ls'), { recursive: true });
  });

  it('runs under Debian runc as well (runc --rootless for the unprivileged user)', async (ctx) => {
    const runc = '/usr/sbin/runc';
    if (!fs.existsSync(runc)) ctx.skip();
    const dir = path.join(sb.dir, 'b-runc');
    await sb.ok(['bundle', ref, dir], { timeoutMs: 120_000 });
    const state = path.join(sb.dir, 'runc-state');
    const r = await exec(runc, ['--root', state, ...(IS_ROOT ? [] : ['--rootless', 'true']), 'run', '--bundle', dir, `bundle-runc-${process.pid}`], { timeoutMs: 60_000, env: sb.env });
    expect(r.stdout, r.stderr).toBe(`FOO=from-the-image cwd=/data id=0:0 host=${os.hostname()}\n`);
    expect(r.code).toBe(7);
  });

  it('--userns keep-id: you keep your uid and gid inside, and the files are yours there too', async (ctx) => {
    await sb.ok(['pull', '-q', ref], { timeoutMs: 120_000 });
    if (!subids()) ctx.skip(); // needs a subordinate range (the test user has one)
    const dir = path.join(sb.dir, 'b-keep');
    await sb.ok(['bundle', '--userns', 'keep-id', ref, dir, 'echo "$(id -u):$(id -g) $(stat -c %u:%g /home/app/secret.txt)"; touch /data/mine && echo wrote']);
    const c = config(dir);
    expect(c.process.user).toEqual({ uid: me.uid, gid: me.gid });
    expect(c.linux.uidMappings).toContainEqual({ containerID: me.uid, hostID: me.uid, size: 1 });
    expect(entries(path.join(dir, 'rootfs')).filter((e) => e.uid !== me.uid || e.gid !== me.gid)).toEqual([]);
    const run = await runBundle(dir);
    expect(run, run.stderr).toMatchObject({ code: 0, stdout: `${me.uid}:${me.gid} ${me.uid}:${me.gid}\nwrote\n` });
  });

  it("--userns subids: the image's owners, in your subordinate range, and the image's users inside", async (ctx) => {
    await sb.ok(['pull', '-q', ref], { timeoutMs: 120_000 });
    if (!subids()) ctx.skip();
    const dir = path.join(sb.dir, 'b-subids');
    await sb.ok(['bundle', '--userns', 'subids', ref, dir, 'stat -c %u:%g /home/app /home/app/secret.txt /bin/busybox; stat -c %a /usr/bin/suid-tool']);
    const s = sb.settings();
    const host = (id: number) => {
      const m = s.uidMap.find(([c, , size]) => id >= c && id < c + size)!;
      return m[1] + id - m[0];
    };
    const st = fs.statSync(path.join(dir, 'rootfs', 'home', 'app'));
    expect(st.uid).toBe(host(1000));
    expect(fs.statSync(path.join(dir, 'rootfs', 'bin', 'busybox')).uid).toBe(host(0));
    expect(config(dir).linux.uidMappings).toEqual(s.uidMap.map(([containerID, hostID, size]) => ({ containerID, hostID, size })));
    const run = await runBundle(dir);
    // Owners as the image says; the set-uid bit kept (a mapped owner; no_new_privs applies).
    expect(run, run.stderr).toMatchObject({ code: 0, stdout: '1000:1000\n1000:1000\n0:0\n4755\n' });
  });

  it('--network none adds a network namespace (loopback only) and mounts a sysfs of its own', async () => {
    const dir = path.join(sb.dir, 'b-nonet');
    await sb.ok(['bundle', '--network', 'none', ref, dir, 'ls /sys/class/net | tr "\\n" " "']);
    const c = config(dir);
    expect(c.linux.namespaces.map((x) => x.type)).toContain('network');
    expect(c.mounts.find((m) => m.destination === '/sys')!.type).toBe('sysfs');
    const run = await runBundle(dir);
    expect(run, run.stderr).toMatchObject({ code: 0, stdout: 'lo ' });
  });

  it('refuses a non-empty directory, a file, and (even with --force) a directory that is not a bundle; --force replaces a bundle', async () => {
    const full = path.join(sb.dir, 'not-empty');
    fs.mkdirSync(full);
    fs.writeFileSync(path.join(full, 'keep.txt'), 'mine\n');
    for (const flags of [[], ['--force']]) {
      const r = await sb.burrow(['bundle', ...flags, ref, full]);
      expect(r.code, r.stderr).toBe(125);
      expect(r.stderr).toContain(`Error: ${full} exists and holds files that are not a bundle's (keep.txt)`);
      expect(fs.readdirSync(full)).toEqual(['keep.txt']);
    }
    const file = path.join(sb.dir, 'a-file');
    fs.writeFileSync(file, 'x');
    const f = await sb.burrow(['bundle', ref, file]);
    expect(f.code).toBe(125);
    expect(f.stderr).toContain('exists and is not a directory');
    // An empty directory is fine.
    const empty = path.join(sb.dir, 'empty');
    fs.mkdirSync(empty);
    await sb.ok(['bundle', ref, empty, 'echo first']);
    const again = await sb.burrow(['bundle', ref, empty, 'echo second']);
    expect(again.code).toBe(125);
    expect(again.stderr).toContain('exists and is not empty (a bundle is there)');
    expect(again.stderr).toContain('fix: name a new directory, or replace that bundle with --force');
    expect(config(empty).process.args).toEqual(['/bin/sh', '-c', 'echo first']);
    fs.writeFileSync(path.join(empty, 'rootfs', 'marker'), 'old bundle\n');
    await sb.ok(['bundle', '--force', ref, empty, 'echo second']);
    expect(config(empty).process.args).toEqual(['/bin/sh', '-c', 'echo second']);
    expect(fs.existsSync(path.join(empty, 'rootfs', 'marker'))).toBe(false);
    expect(fs.readdirSync(sb.dir).filter((x) => /\.(tmp|old)-/.test(x))).toEqual([]);
    // Nothing is pulled or written for a refused request.
    const missing = await sb.burrow(['bundle', '--pull', 'never', `${ref.replace(/:v1$/, '')}:nope`, path.join(sb.dir, 'never')]);
    expect(missing.code).toBe(125);
    expect(fs.existsSync(path.join(sb.dir, 'never'))).toBe(false);
    const host = await sb.burrow(['bundle', '--userns', 'host', ref, path.join(sb.dir, 'b-host')]);
    if (IS_ROOT) {
      expect(host.code, host.stderr).toBe(0);
      expect(config(path.join(sb.dir, 'b-host')).linux.namespaces.map((x: { type: string }) => x.type)).not.toContain('user');
      expect(fs.statSync(path.join(sb.dir, 'b-host', 'rootfs', 'home', 'app')).uid).toBe(1000);
    } else {
      expect(host.code).toBe(125);
      expect(host.stderr).toContain('--userns host');
      expect(fs.existsSync(path.join(sb.dir, 'b-host'))).toBe(false);
    }
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`${signal} while the rootfs is being written leaves neither DIR nor its temporary tree`, async () => {
      // A runtime whose first unpack (the copy) copies the whole rootfs, then hangs: the signal
      // arrives with the tree complete but the bundle not yet in place (the worst moment to
      // stop). Later calls (the removal of the tree) are the real runtime's.
      const marker = path.join(sb.dir, `copied-${signal}`);
      const wrapper = path.join(sb.dir, `slow-runtime-${signal}`);
      fs.writeFileSync(
        wrapper,
        `#!/bin/sh\nif [ ! -e "${marker}" ]; then case " $* " in *" unpack "*) "${RUNTIME}" "$@"; touch "${marker}"; exec sleep 100000 ;; esac; fi\nexec "${RUNTIME}" "$@"\n`,
        { mode: 0o755 },
      );
      await sb.ok(['pull', '-q', ref], { timeoutMs: 120_000 }); // its layers' unpack is not the one to stop
      const dir = path.join(sb.dir, `b-${signal}`);
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries({ ...process.env, ...sb.env, BURROW_RUNTIME: wrapper })) if (v !== undefined) env[k] = v;
      const child = spawn(process.execPath, [BIN, '--root', sb.root, '--runroot', sb.runroot, 'bundle', ref, dir], { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number>((resolve) => child.on('close', (c, s) => resolve(c ?? 128 + (s === 'SIGKILL' ? 9 : 15))));
      while (!fs.existsSync(marker)) await new Promise((r) => setTimeout(r, 50));
      const tmp = fs.readdirSync(sb.dir).filter((x) => x.startsWith(`b-${signal}.tmp-`));
      expect(tmp).toHaveLength(1);
      expect(fs.existsSync(path.join(sb.dir, tmp[0]!, 'rootfs', 'bin', 'busybox'))).toBe(true);
      child.kill(signal);
      const code = await exited;
      expect(code, stderr).toBe(125);
      expect(stderr).toContain(`Error: bundle ${dir}: interrupted (${signal}); nothing was left behind`);
      expect(fs.existsSync(dir)).toBe(false);
      expect(fs.readdirSync(sb.dir).filter((x) => x.startsWith(`b-${signal}.`))).toEqual([]);
    });
  }
});
