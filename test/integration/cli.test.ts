/** Basic CLI behaviour: version, usage errors with Docker's exit status, shell completion. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, burrow, ROOT } from './helpers';
import { IMAGE, setup, type Env } from './lifecycle.helpers';
import pkg from '../../package.json';

describe('burrow CLI', () => {
  it('prints its version', () => {
    for (const args of [['--version'], ['-v']]) {
      const r = burrow(args);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`burrow version ${pkg.version}\n`);
    }
  });

  it('`version` shows the client and the runtime, as text, JSON or a template', () => {
    const rt = spawnSync(path.join(ROOT, 'target', 'release', 'burrow-runtime'), ['--version'], { encoding: 'utf8' }).stdout;
    const rtVersion = /version (\S+)/.exec(rt)![1]!;
    // A worktree's .git is a file naming its git directory.
    const dotGit = path.join(ROOT, '.git');
    const gitDir = fs.statSync(dotGit).isFile() ? path.resolve(ROOT, fs.readFileSync(dotGit, 'utf8').replace(/^gitdir:\s*/, '').trim()) : dotGit;
    const head = fs.readFileSync(path.join(gitDir, 'HEAD'), 'utf8').trim();
    const commit = head.startsWith('ref: ')
      ? spawnSync('git', ['-C', ROOT, 'rev-parse', '--short=7', 'HEAD'], { encoding: 'utf8' }).stdout.trim()
      : head.slice(0, 7);
    const arch = { x64: 'amd64', arm64: 'arm64' }[process.arch as 'x64'] ?? process.arch;
    const j = burrow(['version', '--format', 'json'], { env: { BURROW_RUNTIME: undefined } });
    expect(j.code, j.stderr).toBe(0);
    const v = JSON.parse(j.stdout);
    expect(v).toMatchObject({
      Client: { Version: pkg.version, NodeVersion: process.version, Os: 'linux', Arch: arch },
      Runtime: { Name: 'burrow-runtime', Version: rtVersion, OciVersion: /spec: (\S+)/.exec(rt)![1], Path: path.join(ROOT, 'target', 'release', 'burrow-runtime') },
    });
    // git may be missing or refuse a checkout owned by another user: then only the shape.
    if (/^[0-9a-f]{7}$/.test(commit)) expect(v.Client.GitCommit).toBe(commit);
    else expect(v.Client.GitCommit).toMatch(/^([0-9a-f]{7}|unknown)$/);
    expect(Date.parse(v.Client.BuildTime)).not.toBeNaN();
    const t = burrow(['version']);
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(new RegExp(`^Client:\n Version: +${pkg.version.replace(/\./g, '\\.')}\n Node version: +${process.version}\n Git commit: +\\S+\n Built: +\\w{3} \\w{3} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d \\d{4}\n OS/Arch: +linux/${arch}\n\nRuntime: burrow-runtime\n Version: +`));
    expect(burrow(['version', '--format', '{{.Client.Version}} {{.Runtime.Version}}']).stdout).toBe(`${pkg.version} ${rtVersion}\n`);
    // Without its runtime burrow still says who it is, and fails as `docker version` without a daemon.
    const none = burrow(['version', '--format', '{{.Client.Version}}'], { env: { BURROW_RUNTIME: '/nonexistent/burrow-runtime' } });
    expect(none).toMatchObject({ code: 1, stdout: `${pkg.version}\n` });
    expect(none.stderr).toMatch(/cannot run \/nonexistent\/burrow-runtime --version: ENOENT/);
  });

  it('an unknown command is a usage error: exit 125 and a suggestion', () => {
    const r = burrow(['infp']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/unknown command 'infp'/);
    expect(r.stderr).toMatch(/Did you mean info\?/);
  });

  it('an invalid --format is refused with 125', () => {
    const r = burrow(['info', '--format', 'yaml']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/Allowed choices are text, json/);
  });
});

/**
 * Shell completion, exercised in the real shells: bash sources the generated script and its
 * completion function runs with COMP_WORDS/COMP_LINE as bash's readline would set them (words
 * split at spaces, and at : and = as COMP_WORDBREAKS does); zsh checks its script's syntax and
 * runs its completion function with the completion builtins replaced by printers.
 */
describe('burrow completion', () => {
  let env: Env;
  let shim: string;
  let scripts: { bash: string; zsh: string };
  beforeAll(() => {
    env = setup('completion');
    // The scripts call burrow by the name typed (COMP_WORDS[0]): put one on PATH.
    shim = path.join(env.work, 'bin');
    fs.mkdirSync(shim);
    fs.symlinkSync(BIN, path.join(shim, 'burrow'));
    const r = env.b(['create', '--name', 'compl-alpha', IMAGE, 'true']);
    expect(r.code, r.stderr).toBe(0);
    env.b(['tag', IMAGE, 'compl/other:v2']);
    scripts = { bash: path.join(env.work, 'burrow.bash'), zsh: path.join(env.work, '_burrow') };
    for (const shell of ['bash', 'zsh'] as const) {
      const g = burrow(['completion', shell]);
      expect(g.code, g.stderr).toBe(0);
      fs.writeFileSync(scripts[shell], g.stdout);
    }
  });
  afterAll(() => env?.dispose());

  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  /** What bash completes for `line` with the cursor at its end. */
  const bashComplete = (line: string): string[] => {
    const words: string[] = [];
    for (const w of line.split(/ +/)) {
      for (const part of w.split(/([:=])/)) if (part !== '') words.push(part);
    }
    if (line.endsWith(' ')) words.push('');
    const script = [
      `source ${q(scripts.bash)}`,
      `COMP_LINE=${q(line)}; COMP_POINT=${line.length}`,
      `COMP_WORDS=(${words.map(q).join(' ')}); COMP_CWORD=${words.length - 1}`,
      '_burrow',
      `printf '%s\\n' "\${COMPREPLY[@]}"`,
    ].join('\n');
    const r = spawnSync('bash', ['--norc', '--noprofile', '-c', script], { encoding: 'utf8', env: { ...process.env, PATH: `${shim}:${process.env.PATH}` } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    return r.stdout.split('\n').filter(Boolean);
  };
  const G = () => `burrow --root ${env.store} --runroot ${env.runroot}`;

  it('bash: every command and every flag of the program, from its own definition', () => {
    const help = burrow(['--help']).stdout;
    const commands = [...help.slice(help.indexOf('Commands:')).matchAll(/^ {2}([a-z][\w-]*)(?:\|([\w|-]+))?/gm)].flatMap((m) => [m[1]!, ...(m[2] ? m[2].split('|') : [])]);
    expect(commands).toContain('run');
    expect(bashComplete('burrow ').sort()).toEqual([...new Set(commands)].sort());
    expect(bashComplete('burrow ver')).toEqual(['version']);
    const runHelp = burrow(['run', '--help']).stdout;
    const flags = [...runHelp.matchAll(/^ {2}(-\w, )?(--[\w-]+)/gm)].flatMap((m) => [...(m[1] ? [m[1].slice(0, 2)] : []), m[2]!]);
    expect(flags).toContain('--userns');
    expect(bashComplete('burrow run -').sort()).toEqual([...new Set(flags)].sort());
    expect(bashComplete('burrow run --us')).toEqual(['--user', '--userns', '--user-fallback']);
    expect(bashComplete('burrow container ls -').sort()).toEqual(['-a', '--all', '-q', '--quiet', '-n', '--last', '--no-trunc', '--format', '-f', '--filter', '-h', '--help'].sort());
  });

  it('bash: flag values, as separate words and after =', () => {
    expect(bashComplete('burrow run --userns ')).toEqual(['subuid', 'keep-id', 'single', 'host']);
    // `--userns=k` is three words for bash; what it replaces is only the part after the =.
    expect(bashComplete('burrow run --userns=k')).toEqual(['keep-id']);
    expect(bashComplete('burrow run --group-add k')).toEqual(['keep-groups']);
    expect(bashComplete('burrow info --format ')).toEqual(['text', 'json']);
    expect(bashComplete('burrow run --device /dev/nul')).toEqual(['/dev/null']);
    expect(bashComplete(`burrow --root ${path.join(env.work, 'st')}`)).toEqual([env.store]);
  });

  it('bash: container names and image references from the store on the command line', () => {
    expect(bashComplete(`${G()} rm `)).toEqual(['compl-alpha']);
    expect(bashComplete(`${G()} container start compl-`)).toEqual(['compl-alpha']);
    expect(bashComplete(`${G()} run `).sort()).toEqual(['compl/other:v2', `${IMAGE}:latest`].sort());
    // Image references contain a colon, where bash splits words: only the tail is replaced.
    expect(bashComplete(`${G()} run -d --rm ${IMAGE}:l`)).toEqual(['latest']);
    expect(bashComplete(`${G()} run compl/other:`)).toEqual(['v2']);
    // After the image everything is the container's command: no burrow flags.
    expect(bashComplete(`${G()} run ${IMAGE} -`)).toEqual([]);
    expect(bashComplete(`${G()} inspect `).sort()).toEqual(['compl-alpha', 'compl/other:v2', `${IMAGE}:latest`].sort());
    expect(bashComplete(`burrow --root=${env.store} --runroot=${env.runroot} logs c`)).toEqual(['compl-alpha']);
  });

  it('zsh: the script parses and completes commands, flags, values, containers and images', () => {
    const n = spawnSync('zsh', ['-n', scripts.zsh], { encoding: 'utf8' });
    expect(n.error, 'zsh is installed by .ci/setup').toBeUndefined();
    expect(n.status, n.stderr).toBe(0);
    // Outside a real completion widget, the completion builtins are replaced by printers of what
    // they would offer; `words` and CURRENT are what zsh gives a completion function.
    const zshComplete = (...words: string[]): string[] => {
      const script = [
        'compdef() { : }',
        `source ${q(scripts.zsh)}`,
        'compadd() { local -a o; zparseopts -D -E S:=o q=o a=arr; if (( $#arr )); then print -l -- ${(P)1}; else print -l -- "$@"; fi }',
        '_describe() { local -a l; l=(${(P)${@[-1]}}); print -l -- ${l%%:*}; }',
        '_files() { print -- "<files>" }',
        'compset() { : }',
        `words=(${words.map(q).join(' ')}); CURRENT=${words.length}`,
        '_burrow',
      ].join('\n');
      const r = spawnSync('zsh', ['-f', '-c', script], { encoding: 'utf8', env: { ...process.env, PATH: `${shim}:${process.env.PATH}` } });
      expect(r.stderr).toBe('');
      return r.stdout.split('\n').filter(Boolean);
    };
    const g = ['burrow', '--root', env.store, '--runroot', env.runroot];
    expect(zshComplete('burrow', '')).toEqual(expect.arrayContaining(['run', 'ps', 'container', 'version', 'completion', 'help']));
    expect(zshComplete('burrow', 'run', '--')).toEqual(expect.arrayContaining(['--userns', '--group-add', '--device', '--init', '--init-path']));
    expect(zshComplete('burrow', 'run', '--userns', '')).toEqual(['subuid', 'keep-id', 'single', 'host']);
    expect(zshComplete(...g, 'rm', '')).toEqual(['compl-alpha']);
    expect(zshComplete(...g, 'run', '').sort()).toEqual(['compl/other:v2', `${IMAGE}:latest`].sort());
    expect(zshComplete(...g, 'run', IMAGE, '-')).toEqual([]);
    expect(zshComplete('burrow', 'run', '-v', '')).toEqual(['<files>']);
  });
});
