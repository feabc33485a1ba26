/**
 * The native launcher, target/release/burrow (crates/burrow-runtime/src/launcher, docs/run-plans.md §1):
 * every command it does not serve behaves exactly as bin/burrow.js (it execs it), and a `run --rm
 * ... FILE.sqfs CMD` with a valid run plan runs the container without Node: its output and
 * status, the events, nothing left afterwards, Ctrl-C; a stale plan is a miss that Node serves.
 *
 * The plans here are written by the test itself, from a container that bin/burrow.js created
 * (`create --rm --network none FILE TEMPLATECMD`), templated as docs/run-plans.md §2 says: the TypeScript
 * writer of plans is tested on its own side. Runs as root and as the unprivileged test user.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, IS_ROOT, ROOT, type Run } from './helpers';
import { IMAGE, setup, type Env } from './lifecycle.helpers';

const LAUNCHER = path.join(ROOT, 'target', 'release', 'burrow');
const T = { timeout: 180_000 };
let env: Env;
let sqfs: string;
/** Where the plans go: XDG_RUNTIME_DIR of the runs, private to this file. */
let xdg: string;
let cwd: string;
let template: Template;

/** The environment of every run here, launcher or Node: the store and run root through variables (the grammar has no --root). */
function vars(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/', BURROW_ROOT: env.store, BURROW_RUNROOT: env.runroot, XDG_RUNTIME_DIR: xdg, BURROW_DEBUG: '1', ...extra };
}

function exec(cmd: string, args: string[], extra: Record<string, string> = {}): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: vars(extra), cwd, timeout: 60_000, input: '' });
  if (r.error) throw r.error;
  return { code: r.status ?? 128 + 9, stdout: r.stdout, stderr: r.stderr };
}
/**
 * Without BURROW_DEBUG's other lines: bin/burrow.js's own (on a checkout whose bundle is older
 * than dist/) and the Node CLI's about the plan it writes or not (run-plan-write.test.ts tests
 * those); the launcher's `used`/`miss` line stays.
 */
function quiet(r: Run): Run {
  return { ...r, stderr: r.stderr.replace(/^burrow: debug: (?!run plan: (?:used|miss)).*\n/gm, '') };
}
const viaNode = (args: string[], extra: Record<string, string> = {}) => quiet(exec(process.execPath, [BIN, ...args], extra));
const viaLauncher = (args: string[], extra: Record<string, string> = {}) => quiet(exec(LAUNCHER, args, extra));

/** The launcher's own debug line taken out of its stderr (the rest must be Node's). */
function planLine(r: Run): { line: string; rest: Run } {
  const lines = r.stderr.split('\n');
  const i = lines.findIndex((l) => l.startsWith('burrow: debug: run plan: '));
  const line = i >= 0 ? lines.splice(i, 1)[0]! : '';
  return { line, rest: { ...r, stderr: lines.join('\n') } };
}

interface Template {
  dirs: { path: string; mode: number }[];
  files: { path: string; mode: number; text: string }[];
  logDriver: string;
  runtimeRoot: string;
  cgroupSystemd: boolean;
  driver: string;
}

/** A container bin/burrow.js created, read back and templated (docs/run-plans.md §2), then removed. */
function makeTemplate(): Template {
  const c = viaNode(['create', '--rm', '--network', 'none', sqfs, 'TEMPLATECMD']);
  if (c.code !== 0) throw new Error(`create: ${c.stderr}`);
  const id = c.stdout.trim();
  const dir = path.join(env.store, 'containers', id);
  const rec = JSON.parse(fs.readFileSync(path.join(dir, 'record.json'), 'utf8'));
  const dirs: Template['dirs'] = [];
  const files: Template['files'] = [];
  const walk = (rel: string) => {
    const p = path.join(dir, rel);
    dirs.push({ path: rel, mode: fs.statSync(p).mode & 0o7777 });
    for (const e of fs.readdirSync(p, { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if (e.isFile()) files.push({ path: r, mode: fs.statSync(path.join(dir, r)).mode & 0o7777, text: fs.readFileSync(path.join(dir, r), 'utf8') });
      else throw new Error(`the container directory has ${r}, neither a file nor a directory`);
    }
  };
  walk('');
  for (const f of files) {
    f.text = f.text
      .split('"TEMPLATECMD"')
      .join('"@@ARGS@@"')
      .split(id)
      .join('@@ID@@')
      .split(id.slice(0, 12))
      .join('@@ID12@@')
      .split(`"${rec.name}"`)
      .join('"@@NAME@@"')
      .split(`"${rec.created}"`)
      .join('"@@CREATED@@"');
  }
  const rm = viaNode(['rm', id]);
  if (rm.code !== 0) throw new Error(`rm: ${rm.stderr}`);
  return { dirs, files, logDriver: rec.logDriver, runtimeRoot: rec.runtimeRoot, cgroupSystemd: rec.cgroupManager === 'systemd', driver: rec.rootfs.driver };
}

function fileCheck(p: string) {
  const st = fs.statSync(p, { bigint: true });
  return { path: p, dev: Number(st.dev), ino: Number(st.ino), size: Number(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs) };
}

/** The plan's key as docs/run-plans.md §1 defines it (computed here independently of the launcher). */
function keyOf(options: string[], image: string): string {
  const parts = ['burrow-run-plan-1', ...options].map((s) => `${s}\0`).join('') + `\0${image}\0${cwd}\0${process.getuid!()}\0`;
  return createHash('sha256').update(parts).digest('hex');
}

function planDir(): string {
  return path.join(xdg, 'burrow', 'run-plans');
}

/** Writes the plan for `run OPTIONS sqfs ...` as the CLI would (mode 0600 in a 0700 directory); its path and key. */
function writePlan(options: string[], o: { names?: { adjectives: string[]; nouns: string[] } } = {}): { file: string; key: string } {
  const key = keyOf(options, sqfs);
  const containersDir = path.join(env.store, 'containers');
  const D = path.join(containersDir, '@@ID@@');
  const eventsFile = path.join(env.runroot, 'events.jsonl');
  const cleanup = [process.execPath, BIN, 'rm', '-f', '@@ID@@'];
  const runtimePath = path.join(ROOT, 'target', 'release', 'burrow-runtime');
  const ev = (action: string) =>
    JSON.stringify({ Type: 'container', Action: action, Actor: { ID: '@@ID@@', Attributes: { image: sqfs, name: '@@NAME@@' } }, scope: 'local', time: 0, timeNano: 1 })
      .replace('"time":0', '"time":@@TIME@@')
      .replace('"timeNano":1', '"timeNano":@@TIMENANO@@');
  const v = vars();
  const plan = {
    version: 1,
    key,
    checks: {
      uid: process.getuid!(),
      gid: process.getgid!(),
      groups: process.getgroups!(),
      cwd,
      hostname: os.hostname(),
      env: { PATH: v.PATH, HOME: v.HOME, BURROW_ROOT: v.BURROW_ROOT, BURROW_RUNROOT: v.BURROW_RUNROOT, BURROW_DEBUG: '1', XDG_RUNTIME_DIR: xdg, BURROW_CONFIG: null, BURROW_NO_PLAN: null },
      envPrefixes: ['BURROW_'],
      files: [fileCheck(sqfs), fileCheck(runtimePath), { path: path.join(env.work, 'config.toml'), absent: true }],
    },
    containersDir,
    runtimeRoot: template.runtimeRoot,
    eventsFile,
    eventsMaxBytes: 1 << 20,
    names: o.names ?? { adjectives: ['planned'], nouns: ['run'] },
    dirs: template.dirs,
    files: template.files,
    eventsBefore: [ev('create'), ev('attach')],
    eventsAfter: [ev('destroy')],
    runtime: {
      path: runtimePath,
      args: [
        '--root',
        template.runtimeRoot,
        ...(template.cgroupSystemd ? ['--systemd-cgroup'] : []),
        '--share-userns',
        '--status-fd',
        '3',
        'run',
        '--bundle',
        path.join(D, 'bundle'),
        '--dir',
        D,
        '--events-file',
        eventsFile,
        '--log-driver',
        template.logDriver,
        ...cleanup.flatMap((a) => ['--exit-command', a]),
        ...(template.driver !== 'fuse-overlayfs' ? ['--remove-tree', path.join(D, 'upper'), '--remove-tree', path.join(D, 'work')] : []),
        '@@ID@@',
      ],
      env: ['BURROW_RUNTIME_CLI=1'],
    },
    cleanupCommand: cleanup,
    hostEnv: null,
  };
  fs.mkdirSync(planDir(), { recursive: true, mode: 0o700 });
  const file = path.join(planDir(), `${key}.json`);
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(plan), { mode: 0o600 });
  fs.renameSync(`${file}.tmp`, file);
  return { file, key };
}

/** The events of the container named `name`, in order: their actions. */
function eventsOf(name: string): { id: string; actions: string[] } {
  const lines = fs
    .readFileSync(path.join(env.runroot, 'events.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { Type: string; Action: string; Actor: { ID: string; Attributes: Record<string, string> }; time: number; timeNano: number });
  const id = lines.find((e) => e.Action === 'attach' && e.Actor.Attributes.name === name)?.Actor.ID ?? '';
  const mine = lines.filter((e) => e.Type === 'container' && e.Actor.ID === id);
  for (const e of mine) expect(Math.floor(e.timeNano / 1e9)).toBe(e.time);
  return { id, actions: mine.map((e) => e.Action) };
}

/**
 * What a run may leave: container directories, name links, the runtime's state. Not the
 * runtime's `@userns` (the keepers of the user's shared user namespaces, of no container:
 * userns-share.test.ts).
 */
function leftovers(): string[] {
  const ls = (d: string) => {
    try {
      return fs.readdirSync(d).map((n) => path.join(d, n));
    } catch {
      return [];
    }
  };
  const containers = path.join(env.store, 'containers');
  return [...ls(containers).filter((p) => !p.endsWith('.names')), ...ls(path.join(containers, '.names')), ...ls(template.runtimeRoot).filter((p) => path.basename(p) !== '@userns')];
}

beforeAll(() => {
  if (!fs.existsSync(LAUNCHER)) throw new Error(`${LAUNCHER} is not built: npm run build:rust (scripts/build-runtime.mjs) builds it`);
  env = setup('launcher');
  cwd = fs.realpathSync(env.work);
  xdg = path.join(env.work, 'xdg');
  fs.mkdirSync(xdg, { mode: 0o700 });
  sqfs = path.join(env.work, 'tiny.sqfs');
  const c = env.b(['image', 'convert', '--format', 'squashfs', '--processors', '1', IMAGE, sqfs], { timeout: 120_000 });
  if (c.code !== 0) throw new Error(`convert: ${c.stderr}`);
  template = makeTemplate();
}, 300_000);

afterAll(() => {
  env?.cleanup();
  env?.dispose();
});

describe(`the burrow launcher, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it("hands what it does not serve to bin/burrow.js: the same output and status", T, () => {
    for (const args of [['--version'], ['images'], ['run', '--bogus', sqfs, 'true'], ['run', '--rm', '--network', 'none', 'no-such-image', 'true'], ['rm']]) {
      const node = viaNode(args);
      const launcher = planLine(viaLauncher(args)).rest;
      expect(launcher, args.join(' ')).toEqual(node);
    }
    expect(viaLauncher(['images']).stdout).toContain(IMAGE);
    // BURROW_NODE names the Node.js to run; one that cannot run: status 125 and what to do.
    expect(planLine(viaLauncher(['--version'], { BURROW_NODE: process.execPath })).rest).toEqual(viaNode(['--version']));
    const bad = viaLauncher(['--version'], { BURROW_NODE: path.join(env.work, 'no-node') });
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/^Error: cannot run .*no-node .*bin\/burrow\.js: No such file or directory: .*\nfix: install Node\.js 20/);
    // No plan: Node runs it, and says why with BURROW_DEBUG.
    fs.rmSync(planDir(), { recursive: true, force: true });
    const r = viaLauncher(['run', '--rm', '--network', 'none', sqfs, 'sh', '-c', 'echo ok']);
    expect(planLine(r).line).toMatch(/^burrow: debug: run plan: miss: .*run-plans: No such file or directory/);
    expect(planLine(r).rest).toEqual({ code: 0, stdout: 'ok\n', stderr: '' });
    // BURROW_NO_PLAN: never a plan, even a valid one.
    writePlan(['--rm', '--network', 'none']);
    const no = viaLauncher(['run', '--rm', '--network', 'none', sqfs, 'sh', '-c', 'echo ok'], { BURROW_NO_PLAN: '1' });
    expect(planLine(no)).toEqual({ line: 'burrow: debug: run plan: miss: BURROW_NO_PLAN is set', rest: { code: 0, stdout: 'ok\n', stderr: '' } });
    expect(leftovers()).toEqual([]);
  });

  it('runs the container from a plan: its output and status as through Node, the events, nothing left', T, () => {
    const { key } = writePlan(['--rm', '--network', 'none']);
    // Odd characters in the command (JSON escaping), and an argument that reads like a placeholder.
    const cases: string[][] = [
      ['sh', '-c', 'echo out; echo "$0 $1" >&2; exit 3', 'a"b\\c\t\u00e9', '@@ID@@'],
      ['sh', '-c', 'echo ok; cat; echo end'],
      ['/no/such/cmd'],
    ];
    const want = [3, 0, 127];
    for (const [i, cmd] of cases.entries()) {
      const args = ['run', '--rm', '--network', 'none', sqfs, ...cmd];
      const planned = planLine(viaLauncher(args));
      expect(planned.line).toBe(`burrow: debug: run plan: used ${key}`);
      const node = viaNode(args);
      expect(planned.rest).toEqual(node);
      expect(node.code).toBe(want[i]);
      expect(leftovers()).toEqual([]);
    }
    // The planned run's events: the plan's before and after, the runtime's start and die between.
    const ev = eventsOf('planned_run');
    expect(ev.id).toMatch(/^[0-9a-f]{64}$/);
    expect(ev.actions).toEqual(['create', 'attach', 'start', 'die', 'destroy']);
  });

  it('claims a fresh name when the plan\'s is taken, numbered from the 7th try', T, () => {
    writePlan(['--rm', '--net=none']);
    const names = path.join(env.store, 'containers', '.names');
    fs.mkdirSync(names, { recursive: true, mode: 0o700 });
    fs.symlinkSync('0'.repeat(64), path.join(names, 'planned_run'));
    try {
      const r = planLine(viaLauncher(['run', '--rm', '--net=none', sqfs, 'sh', '-c', 'cat /etc/hostname']));
      expect(r.line).toMatch(/run plan: used/);
      expect(r.rest.code).toBe(0);
      const ev = eventsOf('planned_run_6');
      // The container's own files: its id's 12 first digits are its host name.
      expect(r.rest.stdout).toBe(`${ev.id.slice(0, 12)}\n`);
      expect(fs.readlinkSync(path.join(names, 'planned_run'))).toBe('0'.repeat(64));
    } finally {
      fs.unlinkSync(path.join(names, 'planned_run'));
    }
    expect(leftovers()).toEqual([]);
  });

  it('a stale plan is a miss that Node serves: the image touched, the environment changed, the plan or its directory writable by others', T, () => {
    const args = ['run', '--rm', '--network', 'none', sqfs, 'sh', '-c', 'echo ok'];
    const miss = (r: Run, why: RegExp) => {
      const p = planLine(r);
      expect(p.line).toMatch(new RegExp(`^burrow: debug: run plan: miss: ${why.source}`));
      expect(p.rest).toEqual({ code: 0, stdout: 'ok\n', stderr: '' });
      expect(leftovers()).toEqual([]);
    };
    const { file } = writePlan(['--rm', '--network', 'none']);
    expect(planLine(viaLauncher(args)).line).toMatch(/run plan: used/);
    const t = new Date(Date.now() + 2000);
    fs.utimesSync(sqfs, t, t);
    miss(viaLauncher(args), /.*tiny\.sqfs changed$/);
    writePlan(['--rm', '--network', 'none']);
    miss(viaLauncher(args, { PATH: `${process.env.PATH}:/nonexistent` }), /\$PATH changed$/);
    miss(viaLauncher(args, { BURROW_STORAGE_DRIVER: 'overlay' }), /\$BURROW_STORAGE_DRIVER is set$/);
    fs.chmodSync(file, 0o620);
    miss(viaLauncher(args), /.* is not a private file of uid \d+$/);
    fs.chmodSync(file, 0o600);
    fs.chmodSync(planDir(), 0o770);
    miss(viaLauncher(args), /.*run-plans is not private to uid \d+$/);
    fs.chmodSync(planDir(), 0o700);
    // Another working directory is another key: no plan there.
    const other = spawnSync(LAUNCHER, args, { encoding: 'utf8', env: vars(), cwd: '/' });
    expect(other.stderr).toMatch(/run plan: miss: .*No such file or directory/);
    expect(planLine(viaLauncher(args)).line).toMatch(/run plan: used/);
  });

  it('Ctrl-C (SIGINT) to the launcher reaches the container, which ends and is removed', T, async () => {
    writePlan(['--rm', '--network', 'none']);
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(LAUNCHER, ['run', '--rm', '--network', 'none', sqfs, 'sh', '-c', "trap 'echo caught INT; exit 42' INT; echo ready; while :; do sleep 0.1; done"], { stdio: ['ignore', 'pipe', 'pipe'], env: vars(), cwd });
      let stdout = '';
      let stderr = '';
      let sent = false;
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (!sent && stdout.includes('ready\n')) {
          sent = true;
          child.kill('SIGINT');
        }
      });
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('exit', (code) => resolve({ code, stdout, stderr }));
    });
    expect(r.stderr).toMatch(/run plan: used/);
    expect(r.stdout).toBe('ready\ncaught INT\n');
    expect(r.code).toBe(42);
    expect(leftovers()).toEqual([]);
  });
});
