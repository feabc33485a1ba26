/**
 * The run plan a `burrow run --rm --network none FILE.sqfs CMD` writes for the native launcher
 * (docs/run-plans.md §2, ts/container/run-plan.ts), from the real CLI (bin/burrow.js) with a real squashfs
 * file, as root and as the unprivileged test user: where it is (the key, computed here from
 * docs/run-plans.md's bytes with node:crypto), who may read it, that its checks hold on this system as the
 * launcher checks them, that its templates filled in by hand for another run give that run's own
 * config.json and record.json, that every file the run reads is among its checks (strace), and
 * when none is written.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BIN, IS_ROOT, ROOT } from './helpers';
import { setup, sleep, type Env } from './lifecycle.helpers';
import { makeRootfs } from '../harness/bundle.mjs';

let env: Env;
let image: string;
let xdg: string;
const T = { timeout: 120_000 };

/** The variables of our runs: the store by variable (the launcher takes no global flags), our own XDG_RUNTIME_DIR. */
function runEnv(extra: Record<string, string> = {}): Record<string, string> {
  const e: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('BURROW_')) e[k] = v;
  return { ...e, XDG_RUNTIME_DIR: xdg, BURROW_ROOT: env.store, BURROW_RUNROOT: env.runroot, ...extra };
}

function burrowRun(args: string[], extra: Record<string, string> = {}, prefix: string[] = [], cwd = env.work) {
  const vars = runEnv(extra);
  const r = spawnSync(prefix[0] ?? process.execPath, [...prefix.slice(1), ...(prefix.length ? [process.execPath] : []), BIN, ...args], { encoding: 'utf8', env: vars, cwd, timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, env: vars };
}

/** docs/run-plans.md §1's key, computed here independently of ts/ (node:crypto, not the addon). */
function keyOf(options: string[], img: string, cwd: string): string {
  const text = `burrow-run-plan-1\0${options.map((o) => `${o}\0`).join('')}\0${img}\0${cwd}\0${process.getuid!()}\0`;
  return createHash('sha256').update(text).digest('hex');
}

const planDir = () => path.join(xdg, 'burrow', 'run-plans');

interface FileCheck {
  path: string;
  absent?: boolean;
  dev?: number;
  ino?: number;
  size?: number;
  mtimeNs?: string;
  ctimeNs?: string;
}
interface Plan {
  version: number;
  key: string;
  checks: { uid: number; gid: number; groups: number[]; cwd: string; hostname: string | null; env: Record<string, string | null>; envPrefixes: string[]; envExempt: string[]; files: FileCheck[] };
  containersDir: string;
  dirs: { path: string; mode: number }[];
  files: { path: string; mode: number; text: string }[];
  eventsBefore: string[];
  eventsAfter: string[];
  runtime: { path: string; args: string[]; env: string[] };
  cleanupCommand: string[];
  hostEnv: unknown;
}

/** What the launcher checks before it uses a plan (docs/run-plans.md §1, "Checks"): the reasons it would miss. */
function misses(plan: Plan, key: string, vars: Record<string, string>, cwd: string): string[] {
  const out: string[] = [];
  const c = plan.checks;
  if (plan.version !== 1) out.push('version');
  if (plan.key !== key) out.push('key');
  if (c.uid !== process.getuid!() || c.gid !== process.getgid!()) out.push('uid/gid');
  const groups = (g: number[]) => [...new Set([...g, process.getegid!()])].sort((a, b) => a - b).join(',');
  if (groups(c.groups) !== groups(process.getgroups!())) out.push('groups');
  if (c.cwd !== cwd) out.push('cwd');
  if (c.hostname !== null && c.hostname !== os.hostname()) out.push('hostname');
  for (const [k, v] of Object.entries(c.env)) if ((vars[k] ?? null) !== v) out.push(`env ${k}`);
  for (const k of Object.keys(vars)) if (c.envPrefixes.some((p) => k.startsWith(p)) && !(k in c.env) && !c.envExempt.includes(k)) out.push(`env ${k} (prefix)`);
  for (const f of c.files) {
    const st = fs.statSync(f.path, { bigint: true, throwIfNoEntry: false });
    if (f.absent) {
      if (st) out.push(`file ${f.path} is there`);
    } else if (!st || Number(st.dev) !== f.dev || Number(st.ino) !== f.ino || Number(st.size) !== f.size || String(st.mtimeNs) !== f.mtimeNs || String(st.ctimeNs) !== f.ctimeNs) out.push(`file ${f.path}`);
  }
  return out;
}

/** stat fails for want of search permission on the way. */
function unreachable(p: string): boolean {
  try {
    fs.statSync(p);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EACCES';
  }
}

/** The launcher's filling in (docs/run-plans.md §1, "Placeholders") of a text of the plan. */
function expand(t: string, v: { id: string; name: string; created: string; args: string[] }): string {
  const args = v.args.map((a) => JSON.stringify(a)).join(',');
  return t.split('"@@ARGS@@"').join(args).split('@@ID@@').join(v.id).split('@@ID12@@').join(v.id.slice(0, 12)).split('@@NAME@@').join(v.name).split('@@CREATED@@').join(v.created);
}

function readPlan(key: string): Plan {
  return JSON.parse(fs.readFileSync(path.join(planDir(), `${key}.json`), 'utf8')) as Plan;
}

beforeAll(async () => {
  env = setup('runplan');
  xdg = path.join(env.work, 'xdg');
  fs.mkdirSync(xdg, { mode: 0o700 });
  const src = path.join(env.work, 'src');
  makeRootfs(src);
  image = path.join(env.work, 'job.sqfs');
  const m = spawnSync('mksquashfs', [path.join(src, 'rootfs'), image, '-quiet', '-noappend', '-all-root', '-processors', '1'], { encoding: 'utf8' });
  if (m.status !== 0) throw new Error(`mksquashfs: ${m.stderr}`);
  // The store's first use writes its settings (storage.json, a checked file), and a plan is
  // written only once every checked file is 2 s old (ts/container/run-plan.ts, SETTLED_MS).
  const warm = burrowRun(['run', '--rm', '--network', 'none', image, 'true'], { BURROW_NO_PLAN: '1' });
  if (warm.code !== 0) throw new Error(`first run: ${warm.stderr}`);
  await sleep(2100);
}, 120_000);
afterEach(() => env.cleanup());
afterAll(() => env?.dispose());

describe(`the run plan of a run --rm of a squashfs, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  const opts = ['--rm', '--network', 'none'];

  it('is not written while a file it checks changed in the last 2 s (a second change in the same clock tick would go unseen)', T, () => {
    const fresh = path.join(env.work, 'fresh.sqfs');
    fs.copyFileSync(image, fresh);
    const r = burrowRun(['run', ...opts, fresh, 'true'], { BURROW_DEBUG: '1' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`burrow: debug: run plan: not written: ${fresh} changed less than 2 s ago\n`);
    expect(fs.existsSync(path.join(planDir(), `${keyOf(opts, fresh, env.work)}.json`))).toBe(false);
  });

  it('is written at the path of its key, 0600 in a 0700 directory, and its checks hold', T, () => {
    const r = burrowRun(['run', ...opts, image, 'sh', '-c', 'echo planned'], { BURROW_DEBUG: '1' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('planned\n');
    const key = keyOf(opts, image, env.work);
    const file = path.join(planDir(), `${key}.json`);
    expect(r.stderr).toContain(`burrow: debug: run plan: written ${file}\n`);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(planDir()).mode & 0o777).toBe(0o700);
    expect(fs.statSync(file).uid).toBe(process.getuid!());
    const plan = readPlan(key);
    expect(misses(plan, key, r.env, env.work)).toEqual([]);
    // What it names is this run's: the store, the events, the runtime; no id of this run is left.
    expect(plan.containersDir).toBe(path.join(env.store, 'containers'));
    expect(plan.runtime.path).toBe(path.join(ROOT, 'target', 'release', 'burrow-runtime'));
    expect(plan.runtime.env).toEqual(['BURROW_RUNTIME_CLI=1']);
    expect(plan.runtime.args.at(-1)).toBe('@@ID@@');
    expect(plan.cleanupCommand).toEqual([process.execPath, BIN, '--root', env.store, '--runroot', env.runroot, 'rm', '-f', '@@ID@@']);
    expect(plan.eventsBefore.map((l) => JSON.parse(l.replace(/@@TIME(NANO)?@@/g, '0')).Action)).toEqual(['create', 'attach', 'connect']);
    expect(plan.eventsAfter.map((l) => JSON.parse(l.replace(/@@TIME(NANO)?@@/g, '0')).Action)).toEqual(['destroy']);
    expect(plan.checks.files.map((f) => f.path)).toEqual(expect.arrayContaining([image, '/etc/subuid', '/etc/passwd', '/etc/resolv.conf', path.join(env.store, 'storage.json')]));
    // The run left nothing, and neither does the plan name anything of it.
    expect(env.containerDirs()).toEqual([]);
    const events = fs.readFileSync(path.join(env.runroot, 'events.jsonl'), 'utf8');
    const id = /"Action":"destroy","Actor":\{"ID":"([0-9a-f]{64})"/.exec(events)![1]!;
    expect(JSON.stringify(plan)).not.toContain(id);
    expect(JSON.stringify(plan)).not.toContain(id.slice(0, 12));
  });

  it("filled in by hand for another run, gives that run's own config.json and record.json", T, async () => {
    const first = burrowRun(['run', ...opts, image, 'echo', 'one']);
    expect(first.code, first.stderr).toBe(0);
    const key = keyOf(opts, image, env.work);
    const plan = readPlan(key);
    // A second run, with another command: read its files while it runs.
    const vars = runEnv();
    // Its program ends on SIGTERM (a shell as pid 1 has no default action for it).
    const cmd = ['sh', '-c', 'trap "exit 0" TERM; echo ready; sleep 60 & wait'];
    const child = spawn(process.execPath, [BIN, 'run', ...opts, image, ...cmd], { env: vars, cwd: env.work, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      // Polled until its program has set its trap and said so: no timed assertion.
      let dir: string | undefined;
      while (!out.includes('ready') || !(dir = env.containerDirs().map((n) => path.join(env.store, 'containers', n)).find((x) => fs.existsSync(path.join(x, 'started'))))) {
        if (child.exitCode !== null) throw new Error(`the second run exited ${child.exitCode}`);
        await sleep(20);
      }
      const config = fs.readFileSync(path.join(dir, 'bundle', 'config.json'), 'utf8');
      const rec = JSON.parse(fs.readFileSync(path.join(dir, 'record.json'), 'utf8')) as { id: string; name: string; created: string };
      const v = { id: rec.id, name: rec.name, created: rec.created, args: cmd };
      const t = (p: string) => plan.files.find((f) => f.path === p)!.text;
      // config.json: the very bytes the second run wrote.
      expect(expand(t('bundle/config.json'), v)).toBe(config);
      expect(JSON.parse(expand(t('record.json'), v))).toEqual(JSON.parse(fs.readFileSync(path.join(dir, 'record.json'), 'utf8')));
      for (const f of plan.files.filter((x) => !['record.json', 'bundle/config.json'].includes(x.path))) {
        expect(expand(f.text, v), f.path).toBe(fs.readFileSync(path.join(dir, f.path), 'utf8'));
        expect(fs.statSync(path.join(dir, f.path)).mode & 0o7777, f.path).toBe(f.mode);
      }
      for (const d of plan.dirs) expect(fs.statSync(path.join(dir, d.path)).isDirectory(), d.path).toBe(true);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.on('exit', r));
    }
    expect(env.containerDirs()).toEqual([]);
  });

  it('lists every file the run reads among its checks (strace of the CLI)', T, () => {
    const trace = path.join(env.work, 'strace.txt');
    const r = burrowRun(['run', ...opts, image, 'true'], {}, ['strace', '-qq', '-e', 'trace=openat,open,stat,lstat,newfstatat,statx,access,faccessat,faccessat2,readlink,execve', '-o', trace]);
    expect(r.code, r.stderr).toBe(0);
    const plan = readPlan(keyOf(opts, image, env.work));
    const listed = new Set(plan.checks.files.map((f) => f.path));
    // Node's main thread only (no -f: burrow's file reads are synchronous, on it): tracing the
    // runtime too would stop squashfuse while a traced process waits on its mount.
    const lines = fs.readFileSync(trace, 'utf8').split('\n');
    const others = new Set(lines.filter((l) => /^\d+ execve\("/.test(l) && !l.includes(`execve("${process.execPath}"`) && !/= -1 /.test(l)).map((l) => l.split(' ')[0]));
    const read = new Set<string>();
    for (const l of lines) {
      const m = /^(?:(\d+) +)?\w+\((?:AT_FDCWD, |-?\d+, )?"([^"]+)"/.exec(l);
      if (m && !(m[1] && others.has(m[1])) && m[2]!.startsWith('/')) read.add(path.normalize(m[2]!));
    }
    const dirOfRun = (p: string) => p.startsWith(path.join(env.store, 'containers')) || p.startsWith(env.runroot) || p.startsWith(xdg);
    // What needs no check, and why: the CLI's own code and Node's (the bundle and the addon are
    // checked through dist/bundle/manifest.json, burrow.js and the addon's file), the kernel's
    // views, the directories walked to reach checked files, temporary files of this run.
    const exempt = (p: string) =>
      dirOfRun(p) ||
      p.startsWith(path.join(ROOT, 'dist')) ||
      p.startsWith(path.join(ROOT, 'node_modules')) ||
      p.startsWith(path.join(ROOT, 'bin')) ||
      p === path.join(ROOT, 'package.json') ||
      /^\/(proc|sys|dev\/(null|urandom|pts|shm|fd))(\/|$)/.test(p) ||
      /^\/(usr\/)?lib(64|32|x32)?\//.test(p) ||
      p.startsWith('/etc/ld.so') ||
      p === process.execPath ||
      /^\/(etc\/(localtime|ssl\/.*)|usr\/share(\/zoneinfo(\/.*)?)?)$/.test(p) ||
      // The V8 code cache of the bundle (bin/burrow.js): keyed by the bundle's hash, which the
      // checks of dist/bundle cover.
      /\/\.cache\/burrow(\/|$)/.test(p) ||
      // unsquashfs, wherever PATH finds it, only reads the image's config and users out of the
      // image file, which is checked itself (what it read is kept in file-images/, checked too).
      path.basename(p) === 'unsquashfs' ||
      // Not reachable by this user (root's PATH entries seen by the test user): the nearest
      // directory that is stands for it among the checks.
      ([...listed].some((f) => p.startsWith(`${f}/`)) && unreachable(p)) ||
      p.startsWith(path.join(os.tmpdir(), 'burrow-sqfs-')) ||
      // Directories on the way (cwd, the store, parents of checked files), and the image's kept
      // entries directory.
      [...listed].some((f) => f.startsWith(`${p}/`)) ||
      env.work.startsWith(p) ||
      p === path.join(env.store, 'file-images') ||
      // The kept entry's temporary file while the run writes it (written, not read).
      p.startsWith(path.join(env.store, 'file-images', '')) && /\.json\.tmp-\d+-\w+$/.test(p) ||
      p === env.store;
    // The trace sees the run's reads (the image, the host's files its /etc files come from).
    expect([...read]).toEqual(expect.arrayContaining([image, '/etc/resolv.conf', path.join(env.store, 'storage.json')]));
    const unchecked = [...read].filter((p) => !listed.has(p) && !exempt(p)).sort();
    expect(unchecked).toEqual([]);
  });

  it("--hpc: the host's variables are one HOSTENV placeholder, and the host name is checked", T, () => {
    const r = burrowRun(['run', '--rm', '--hpc', image, 'sh', '-c', 'echo $PLAN_PROBE'], { PLAN_PROBE: 'seen', BURROW_DEBUG: '1' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('seen\n');
    const key = keyOf(['--rm', '--hpc'], image, env.work);
    const plan = readPlan(key);
    expect(misses(plan, key, r.env, env.work)).toEqual([]);
    expect(plan.checks.hostname).toBe(os.hostname());
    expect(plan.hostEnv).toMatchObject({ denyPrefix: 'BURROW_', deny: expect.arrayContaining(['PATH', 'LD_LIBRARY_PATH']) });
    const config = plan.files.find((f) => f.path === 'bundle/config.json')!.text;
    const processEnv = (JSON.parse(config) as { process: { env: string[] } }).process.env;
    expect(processEnv.filter((e) => e === '@@HOSTENV@@')).toHaveLength(1);
    // No host value is left in it (PLAN_PROBE came from the host).
    expect(processEnv.some((e) => e.startsWith('PLAN_PROBE='))).toBe(false);
    // A run that warns (--hpc in a system directory, which is not bound) gets none: the launcher
    // would not repeat the warning.
    const w = burrowRun(['run', '--rm', '--hpc', image, 'true'], { BURROW_DEBUG: '1' }, [], '/usr');
    expect(w.code, w.stderr).toBe(0);
    expect(w.stderr).toContain('burrow: warning: --hpc: the working directory /usr');
    expect(w.stderr).toContain('burrow: debug: run plan: not written: the run printed a warning\n');
    expect(fs.existsSync(path.join(planDir(), `${keyOf(['--rm', '--hpc'], image, '/usr')}.json`))).toBe(false);
  });

  it('is not written with BURROW_NO_PLAN, nor for a run the launcher does not take (said under BURROW_DEBUG)', T, () => {
    fs.rmSync(planDir(), { recursive: true, force: true });
    const a = burrowRun(['run', ...opts, image, 'true'], { BURROW_NO_PLAN: '1', BURROW_DEBUG: '1' });
    expect(a.code, a.stderr).toBe(0);
    expect(fs.existsSync(planDir()) ? fs.readdirSync(planDir()) : []).toEqual([]);
    const vol = path.join(env.work, 'vol');
    fs.mkdirSync(vol, { recursive: true });
    const b = burrowRun(['run', '--rm', '--network', 'none', '-v', `${vol}:/v`, image, 'true'], { BURROW_DEBUG: '1' });
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toMatch(/burrow: debug: run plan: not written: the command line is not one the launcher reads/);
    // The same run without BURROW_NO_PLAN: its plan, and only it.
    const c = burrowRun(['run', '--rm', '--network', 'none', image, 'true']);
    expect(c.code, c.stderr).toBe(0);
    expect(fs.readdirSync(planDir())).toEqual([`${keyOf(opts, image, env.work)}.json`]);
  });
});
