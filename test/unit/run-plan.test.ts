/**
 * Run plans (ts/container/run-plan.ts, docs/run-plans.md §2): the launcher's splitter and key against
 * docs/run-plans.md's byte layout, the templates (placeholders where the launcher fills in per-run values,
 * nothing of the run that wrote them left), which runs get none, and an audit of ts/: every
 * variable the run path reads is checked (or listed as read elsewhere, with why). That every file
 * a run reads is among checks.files is proven against the real CLI under strace
 * (test/integration/run-plan-write.test.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ContainerRecord } from '../../ts/container/records';
import {
  CHECKED_ENV,
  OFF_RUN_PATH_ENV,
  P,
  envChecks,
  eventTemplate,
  fileCheck,
  fileChecksJson,
  hostEnvTemplate,
  ineligible,
  planKey,
  planKeyText,
  processUmask,
  readContainerDir,
  splitRunArgv,
  templateFiles,
  type FileEntry,
} from '../../ts/container/run-plan';
import { recordEvent } from '../../ts/engine/events';

const ROOT = path.join(__dirname, '..', '..');
const ID = 'a'.repeat(8) + '0123456789abcdef'.repeat(3) + 'b'.repeat(8);
const NAME = 'brave_otter';
const CREATED = '2026-12-07T14:49:07.392Z';

describe('the launcher grammar and key', () => {
  it('splits run, its known options, the image and the command as given', () => {
    expect(splitRunArgv(['run', '--rm', '--network', 'none', '-e', 'A=1', '--env=B', '-w', '/x', '--user=1:1', '--hpc', '/j/x.sqfs', 'sh', '-c', 'echo --rm'])).toEqual({
      options: ['--rm', '--network', 'none', '-e', 'A=1', '--env=B', '-w', '/x', '--user=1:1', '--hpc'],
      image: '/j/x.sqfs',
      command: ['sh', '-c', 'echo --rm'],
    });
    expect(splitRunArgv(['run', '--net=host', '-u', 'alice', '--rm', 'x.sif', 'true'])?.image).toBe('x.sif');
  });

  it('refuses what the launcher hands to Node', () => {
    for (const argv of [
      ['ps'],
      ['--root', '/s', 'run', '--rm', '/x.sqfs', 'true'],
      ['run', '/x.sqfs', 'true'], // no --rm
      ['run', '--rm', '/x.sqfs'], // no command
      ['run', '--rm', '-t', '/x.sqfs', 'sh'],
      ['run', '--rm', '-i', '/x.sqfs', 'sh'],
      ['run', '--rm', '-d', '/x.sqfs', 'sh'],
      ['run', '--rm', '--name', 'n', '/x.sqfs', 'sh'],
      ['run', '--rm', '-p', '80:80', '/x.sqfs', 'sh'],
      ['run', '--rm', '-v', '/a:/a', '/x.sqfs', 'sh'],
      ['run', '--rm', 'busybox', 'true'], // a store image: not a path
      ['run', '--rm', '--network'], // a value missing
      ['run', '--rm', '-e'],
    ]) {
      expect(splitRunArgv(argv), argv.join(' ')).toBeUndefined();
    }
  });

  it('hashes docs/run-plans.md\'s bytes: printf \'burrow-run-plan-1\\x00--rm\\x00--network\\x00none\\x00-e\\x00A=1\\x00\\x00/tmp/job/x.sqfs\\x00/home/u\\x001001\\x00\' | sha256sum', () => {
    const a = splitRunArgv(['run', '--rm', '--network', 'none', '-e', 'A=1', '/tmp/job/x.sqfs', 'true'])!;
    expect(planKeyText(a, '/home/u', 1001)).toBe('burrow-run-plan-1\0--rm\0--network\0none\0-e\0A=1\0\0/tmp/job/x.sqfs\0/home/u\x001001\0');
    // Computed by hand with the printf above (coreutils sha256sum).
    expect(planKey(a, '/home/u', 1001)).toBe('3d8e74532c6549ebdc1811e9422ce14b01278c3e16cd3b5da6edf739362bf1c2');
    // The command is not part of the key; the options as given are.
    expect(planKey({ ...a, command: ['other'] }, '/home/u', 1001)).toBe(planKey(a, '/home/u', 1001));
    expect(planKey(splitRunArgv(['run', '--network=none', '--rm', '-e', 'A=1', '/tmp/job/x.sqfs', 'true'])!, '/home/u', 1001)).not.toBe(planKey(a, '/home/u', 1001));
  });
});

/** A record and config.json as the create writes them, for `command` after `entrypoint`. */
function container(command: string[], entrypoint: string[] | null = null, env: string[] = ['PATH=/usr/bin', `HOSTNAME=${ID.slice(0, 12)}`]): { rec: ContainerRecord; files: FileEntry[] } {
  const rec = {
    id: ID,
    name: NAME,
    image: 'sha256:' + 'c'.repeat(64),
    imageName: '/j/x.sqfs',
    created: CREATED,
    command: [...(entrypoint ?? []), ...command],
    tty: false,
    interactive: false,
    autoRemove: true,
    detached: true,
    stopSignal: 'SIGTERM',
    stopTimeout: 10,
    labels: {},
    runtimeRoot: '/run/user/1/burrow/runtime',
    logPath: `/s/containers/${ID}/ctr.log`,
    logDriver: 'k8s-file',
    hostname: ID.slice(0, 12),
    network: 'none',
    net: { mode: 'none', ports: [] },
    mounts: [],
    config: { user: '', entrypoint, cmd: command, binds: [], tmpfs: {}, readOnly: false, privileged: false, capAdd: [], capDrop: [], securityOpt: [], workdir: '/' },
  } as unknown as ContainerRecord;
  const spec = {
    ociVersion: '1.0.2',
    process: { args: [...(entrypoint ?? []), ...command], env, cwd: '/' },
    hostname: ID.slice(0, 12),
    mounts: [{ destination: '/etc/hosts', type: 'bind', source: `/s/containers/${ID}/etc/hosts` }],
    annotations: { 'io.burrow.container.name': NAME, 'run.burrow.rootfs.squashfuse': '/j/x.sqfs' },
  };
  return {
    rec,
    files: [
      { path: 'etc/hosts', mode: 0o644, text: `127.0.0.1\tlocalhost\n127.0.1.1\t${ID.slice(0, 12)}\n` },
      { path: 'bundle/config.json', mode: 0o644, text: JSON.stringify(spec) },
      { path: 'record.json', mode: 0o644, text: `${JSON.stringify(rec, null, 2)}\n` },
    ],
  };
}

const textOf = (files: FileEntry[], p: string) => files.find((f) => f.path === p)!.text;

/** What the launcher does with a template (docs/run-plans.md §1, "Placeholders"), for the tests' own checks. */
function expand(t: string, v: { id: string; name: string; created: string; args: string[]; hostEnv?: string[] }): string {
  const list = (items: string[], ph: string, s: string) => {
    const j = items.map((a) => JSON.stringify(a)).join(',');
    if (items.length) return s.split(`"${ph}"`).join(j);
    return s.split(`,"${ph}"`).join('').split(`"${ph}",`).join('').split(`"${ph}"`).join('');
  };
  let s = list(v.args, P.args, t);
  s = list(v.hostEnv ?? [], P.hostEnv, s);
  return s.split(P.id).join(v.id).split(P.id12).join(v.id.slice(0, 12)).split(P.name).join(v.name).split(P.created).join(v.created);
}

describe('the templates', () => {
  it('have placeholders for the name, the time and the command, and nothing of the run that wrote them', () => {
    const { rec, files } = container(['sh', '-c', 'echo hi']);
    const t = templateFiles(files, rec, ['sh', '-c', 'echo hi']);
    for (const f of t) {
      expect(f.text).not.toContain(ID);
      expect(f.text).not.toContain(ID.slice(0, 12));
      expect(f.text).not.toContain(NAME);
      expect(f.text).not.toContain(CREATED);
    }
    const r = JSON.parse(textOf(t, 'record.json'));
    expect(r).toMatchObject({ id: P.id, name: P.name, created: P.created, command: [P.args], hostname: P.id12, logPath: `/s/containers/${P.id}/ctr.log`, config: { cmd: [P.args] } });
    const c = JSON.parse(textOf(t, 'bundle/config.json'));
    expect(c.process.args).toEqual([P.args]);
    expect(c.annotations['io.burrow.container.name']).toBe(P.name);
    expect(c.hostname).toBe(P.id12);
    expect(textOf(t, 'etc/hosts')).toBe(`127.0.0.1\tlocalhost\n127.0.1.1\t${P.id12}\n`);
    // Expanded for the run that wrote them: the very same config and record (as JSON).
    const v = { id: ID, name: NAME, created: CREATED, args: ['sh', '-c', 'echo hi'] };
    expect(expand(textOf(t, 'bundle/config.json'), v)).toBe(textOf(files, 'bundle/config.json'));
    expect(JSON.parse(expand(textOf(t, 'record.json'), v))).toEqual(JSON.parse(textOf(files, 'record.json')));
  });

  it('put ARGS after the entrypoint', () => {
    const { rec, files } = container(['-v', 'x'], ['/bin/entry', '--flag']);
    const t = templateFiles(files, rec, ['-v', 'x']);
    expect(JSON.parse(textOf(t, 'bundle/config.json')).process.args).toEqual(['/bin/entry', '--flag', P.args]);
    const r = JSON.parse(textOf(t, 'record.json'));
    expect(r.command).toEqual(['/bin/entry', '--flag', P.args]);
    expect(r.config.cmd).toEqual([P.args]);
    expect(r.config.entrypoint).toEqual(['/bin/entry', '--flag']);
    const other = { id: 'f'.repeat(64), name: 'calm_mole', created: '2027-01-01T00:00:00.000Z', args: ['a b', '"q"'] };
    expect(JSON.parse(expand(textOf(t, 'bundle/config.json'), other)).process.args).toEqual(['/bin/entry', '--flag', 'a b', '"q"']);
  });

  it("replace --hpc's host variables, one run of them, by one HOSTENV element", () => {
    const host = ['HOME=/home/u', 'SLURM_JOB_ID=7', 'LANG=C'];
    const { rec, files } = container(['true'], null, ['PATH=/usr/bin', 'HOSTNAME=node1', 'OMPI_MCA_btl_vader_single_copy_mechanism=none', ...host, 'OWN=1']);
    const t = templateFiles(files, rec, ['true'], { entries: host });
    const env = JSON.parse(textOf(t, 'bundle/config.json')).process.env;
    expect(env).toEqual(['PATH=/usr/bin', 'HOSTNAME=node1', 'OMPI_MCA_btl_vader_single_copy_mechanism=none', P.hostEnv, 'OWN=1']);
    const c = JSON.parse(expand(textOf(t, 'bundle/config.json'), { id: ID, name: NAME, created: CREATED, args: ['true'], hostEnv: ['HOME=/h2', 'NEW=x'] }));
    expect(c.process.env).toEqual(['PATH=/usr/bin', 'HOSTNAME=node1', 'OMPI_MCA_btl_vader_single_copy_mechanism=none', 'HOME=/h2', 'NEW=x', 'OWN=1']);
    // Not one run (another entry between two host ones): no plan.
    expect(() => hostEnvTemplate(['HOME=/home/u', 'X=1', 'SLURM_JOB_ID=7', 'LANG=C'], host)).toThrow(/one run/);
  });

  it('refuse an unexpected shape, or a name or time left where no placeholder is', () => {
    const { rec, files } = container(['true']);
    expect(() => templateFiles(files, rec, ['false'])).toThrow(/not the entrypoint followed by the command/);
    const named = files.map((f) => (f.path === 'etc/hosts' ? { ...f, text: `${f.text}127.0.0.2\t${NAME}\n` } : f));
    expect(() => templateFiles(named, rec, ['true'])).toThrow(/name where no placeholder is/);
    const pretty = files.map((f) => (f.path === 'bundle/config.json' ? { ...f, text: JSON.stringify(JSON.parse(f.text), null, 1) } : f));
    expect(() => templateFiles(pretty, rec, ['true'])).toThrow(/form/);
    expect(() => templateFiles(files.filter((f) => f.path !== 'record.json'), rec, ['true'])).toThrow(/no record.json/);
  });

  it('events are emitEvent\'s lines with the time, id and name as placeholders', () => {
    const e = { Type: 'container' as const, Action: 'create', Actor: { ID, Attributes: { image: '/j/x.sqfs', name: NAME } } };
    const t = eventTemplate(e, { id: ID, name: NAME });
    expect(t).toBe('{"Type":"container","Action":"create","Actor":{"ID":"@@ID@@","Attributes":{"image":"/j/x.sqfs","name":"@@NAME@@"}},"scope":"local","time":@@TIME@@,"timeNano":@@TIMENANO@@}');
    // Filled in, it is the line emitEvent writes at that time.
    const now = 1796655402823;
    const line = t.split(P.id).join(ID).split(P.name).join(NAME).split(P.time).join(String(Math.floor(now / 1000))).split(P.timeNano).join(String(now * 1_000_000));
    expect(line).toBe(JSON.stringify(recordEvent(e, now)));
    // A network's name is the network's, not the container's.
    const n = eventTemplate({ Type: 'network', Action: 'connect', Actor: { ID: 'n1', Attributes: { container: ID, name: NAME, type: 'null' } } }, { id: ID, name: NAME });
    expect(JSON.parse(n.replace(/@@TIME(NANO)?@@/g, '0')).Actor.Attributes).toEqual({ container: P.id, name: NAME, type: 'null' });
  });
});

describe('which runs get a plan', () => {
  const ok = container(['true']);
  const cfg = { annotations: { 'run.burrow.rootfs.squashfuse': '/j/x.sqfs' } };
  const split = (...a: string[]) => splitRunArgv(['run', ...a]);
  it('a foreground run --rm of a one-file image on network none or host', () => {
    expect(ineligible(ok.rec, split('--rm', '--network', 'none', '/j/x.sqfs', 'true'), ['true'], cfg, false)).toBeUndefined();
    const host = { ...ok.rec, network: 'host', net: { ...ok.rec.net!, mode: 'host' as const } };
    expect(ineligible(host, split('--rm', '--network', 'host', '/j/x.sqfs', 'true'), ['true'], cfg, false)).toBeUndefined();
    const hpc = { ...host, mounts: [{ type: 'bind', source: '/home/u', destination: '/home/u', mode: '', rw: true }] };
    expect(ineligible(hpc, split('--rm', '--hpc', '/j/x.sqfs', 'true'), ['true'], cfg, true)).toBeUndefined();
  });
  it('none for -t, -d, --name, -p, no --rm, no command (the command line), a store image, slirp4netns, volumes', () => {
    for (const a of [['-t'], ['-d'], ['--name', 'x'], ['-p', '80']]) expect(ineligible(ok.rec, split('--rm', ...a, '/j/x.sqfs', 'true'), ['true'], cfg, false)).toMatch(/command line/);
    expect(ineligible({ ...ok.rec, autoRemove: false }, split('/j/x.sqfs', 'true'), ['true'], cfg, false)).toMatch(/command line/);
    expect(ineligible(ok.rec, split('--rm', '/j/x.sqfs'), [], cfg, false)).toMatch(/command line/);
    // The record's own word, had the command line said otherwise.
    expect(ineligible({ ...ok.rec, tty: true }, split('--rm', '/j/x.sqfs', 'true'), ['true'], cfg, false)).toMatch(/terminal/);
    expect(ineligible({ ...ok.rec, autoRemove: false }, split('--rm', '/j/x.sqfs', 'true'), ['true'], cfg, false)).toMatch(/no --rm/);
    // A store image reached by a path-like name: no squashfuse annotation for that file.
    expect(ineligible(ok.rec, split('--rm', 'library/busybox', 'true'), ['true'], { annotations: {} }, false)).toMatch(/one-file image/);
    const slirp = { ...ok.rec, network: 'slirp4netns', net: { ...ok.rec.net!, mode: 'slirp4netns' as const } };
    expect(ineligible(slirp, split('--rm', '/j/x.sqfs', 'true'), ['true'], cfg, false)).toMatch(/network slirp4netns/);
    const vol = { ...ok.rec, mounts: [{ type: 'bind', source: '/a', destination: '/b', mode: '', rw: true }] };
    expect(ineligible(vol, split('--rm', '/j/x.sqfs', 'true'), ['true'], cfg, false)).toMatch(/volumes/);
    expect(ineligible(ok.rec, split('--rm', '/j/x.sqfs', 'true'), ['other'], cfg, false)).toMatch(/differ/);
  });
});

describe('checks', () => {
  it("umask: this process's, from /proc/self/status, as the launcher reads it with umask(2)", () => {
    expect(processUmask('Name:\tnode\nUmask:\t0027\nState:\tR (running)\n')).toBe(0o027);
    expect(processUmask('Name:\tnode\n')).toBeUndefined();
    const mask = process.umask(0o022);
    process.umask(mask);
    expect(processUmask()).toBe(mask);
  });

  it('env: every set BURROW_* variable, the run path\'s names (null when unset), bare -e names', () => {
    const env = { BURROW_ROOT: '/s', HOME: '/h', PATH: '/bin', A: 'x', OTHER: 'y' };
    const c = envChecks(env, ['A', 'B=1', 'C']);
    expect(c).toMatchObject({ BURROW_ROOT: '/s', HOME: '/h', PATH: '/bin', XDG_RUNTIME_DIR: null, TMPDIR: null, A: 'x', C: null });
    expect(c).not.toHaveProperty('B');
    expect(c).not.toHaveProperty('OTHER');
  });

  it('files: stat with nanosecond times as decimal strings, absent files, exact integers in JSON', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-plan-unit-'));
    try {
      const f = path.join(dir, 'f');
      fs.writeFileSync(f, 'abc');
      const c = fileCheck(f);
      const st = fs.statSync(f, { bigint: true });
      expect(c).toEqual({ path: f, dev: st.dev, ino: st.ino, size: 3n, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs });
      expect(fileCheck(path.join(dir, 'none'))).toEqual({ path: path.join(dir, 'none'), absent: true });
      const big = { path: '/x', dev: 2n ** 60n + 1n, ino: 2n ** 63n + 5n, size: 1n, mtimeNs: 1765115347123456789n, ctimeNs: 1n };
      expect(fileChecksJson([big, { path: '/y', absent: true }])).toBe(`[{"path":"/x","dev":1152921504606846977,"ino":9223372036854775813,"size":1,"mtimeNs":"1765115347123456789","ctimeNs":"1"},{"path":"/y","absent":true}]`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reads the container's directory: directories first, modes, texts; refuses links", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-plan-unit-'));
    try {
      fs.mkdirSync(path.join(dir, 'etc'), { mode: 0o755 });
      fs.writeFileSync(path.join(dir, 'record.json'), '{}', { mode: 0o600 });
      fs.writeFileSync(path.join(dir, 'etc', 'hosts'), 'h\n');
      fs.chmodSync(dir, 0o700);
      const r = readContainerDir(dir);
      expect(r.dirs).toEqual([{ path: '', mode: 0o700 }, { path: 'etc', mode: fs.statSync(path.join(dir, 'etc')).mode & 0o7777 }]);
      expect(r.files.map((f) => f.path)).toEqual(['etc/hosts', 'record.json']);
      expect(r.files[1]).toMatchObject({ mode: 0o600, text: '{}' });
      fs.symlinkSync('x', path.join(dir, 'link'));
      expect(() => readContainerDir(dir)).toThrow(/neither a file nor a directory/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Every `.ts` file under ts/. */
function sources(dir = path.join(ROOT, 'ts')): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

/**
 * Reads of the environment by a name computed at run time, where, and why they need no entry of
 * their own: the audit fails on any other (a new one must be looked at and listed here).
 */
const DYNAMIC_READS: Record<string, string> = {
  'ts/config/config.ts': "setting(): BURROW_* names only, covered by the BURROW_ prefix",
  'ts/container/create.ts': 'a bare -e NAME or --env-file line: -e names are checked (envChecks); --env-file is not in the launcher grammar',
  'ts/cli/commands/build.ts': 'build secrets and args: not run',
  'ts/build/mounts.ts': 'build secrets: not run',
  'ts/container/exec.ts': 'exec: not run',
  'ts/api/main.ts': 'the API service deletes its socket activation variables',
};

describe('the env audit of ts/', () => {
  it('every variable read in ts/ is checked by a plan, is burrow\'s (BURROW_*), or is listed as read off the run path with why', () => {
    const named = new Map<string, string[]>();
    const dynamic = new Set<string>();
    const re = /process\.env\.([A-Za-z_][A-Za-z0-9_]*)|process\.env\[\s*['"]([^'"]+)['"]\s*\]|\benv\.([A-Z_][A-Z0-9_]*)\b|\benv\[\s*['"]([A-Z_][A-Z0-9_]*)['"]\s*\]|['"]((?:BURROW|XDG|DOCKER)_[A-Z0-9_]+)['"]/g;
    for (const file of sources()) {
      const rel = path.relative(ROOT, file);
      const text = fs.readFileSync(file, 'utf8');
      for (const m of text.matchAll(re)) {
        const name = m[1] ?? m[2] ?? m[3] ?? m[4] ?? m[5]!;
        named.set(name, [...(named.get(name) ?? []), rel]);
      }
      if (/process\.env\[\s*[^'"\s]/.test(text)) dynamic.add(rel);
    }
    expect(named.size).toBeGreaterThan(20); // the audit sees the reads it is about
    const unlisted = [...named.keys()].filter((n) => !n.startsWith('BURROW_') && !(CHECKED_ENV as readonly string[]).includes(n) && !(n in OFF_RUN_PATH_ENV));
    expect(unlisted.map((n) => `${n} (${named.get(n)!.join(', ')})`)).toEqual([]);
    expect([...dynamic].filter((f) => !(f in DYNAMIC_READS))).toEqual([]);
    for (const [n, why] of Object.entries(OFF_RUN_PATH_ENV)) expect(why.length, n).toBeGreaterThan(10);
  });

  it('fails on a new name (the audit itself)', () => {
    const text = 'const x = process.env.SOME_NEW_THING; const y = env.OTHER_NEW;';
    const found = [...text.matchAll(/process\.env\.([A-Za-z_][A-Za-z0-9_]*)|\benv\.([A-Z_][A-Z0-9_]*)\b/g)].map((m) => m[1] ?? m[2]);
    expect(found.filter((n) => !(CHECKED_ENV as readonly string[]).includes(n!) && !(n! in OFF_RUN_PATH_ENV))).toEqual(['SOME_NEW_THING', 'OTHER_NEW']);
  });
});
