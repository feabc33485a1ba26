/**
 * `burrow version`, shaped like `docker version`: the CLI (Client) and the runtime that runs
 * the containers (burrow has no daemon, so no Server; the runtime is what answers for it).
 * Text by default, `--format json`, or a Go-template-like `--format '{{.Client.Version}}'`.
 * `burrow --version` stays the one-line answer bin/burrow.js gives without loading the CLI.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../../host/paths';
import { runtimeBinary, runtimeSync } from '../../runtime/client';
import { VERSION } from '../../version';

export interface VersionInfo {
  Client: { Version: string; NodeVersion: string; GitCommit: string; BuildTime: string; Os: string; Arch: string };
  Runtime: { Name: string; Version: string; OciVersion: string; Path: string; BuildTime: string } | { Name: string; Path: string; Error: string };
}

/** Go's names for architectures, as Docker prints them. */
function goArch(a: string): string {
  return ({ x64: 'amd64', ia32: '386', ppc64: 'ppc64le' } as Record<string, string>)[a] ?? a;
}

/**
 * The checkout's commit, read from .git without running git (short, as Docker shows it);
 * "unknown" for an installed package.
 */
export function gitCommit(root = PACKAGE_ROOT): string {
  try {
    let gitDir = path.join(root, '.git');
    if (fs.statSync(gitDir).isFile()) {
      // A worktree or submodule: ".git" names the real directory.
      gitDir = path.resolve(root, fs.readFileSync(gitDir, 'utf8').replace(/^gitdir:\s*/, '').trim());
    }
    const head = fs.readFileSync(path.join(gitDir, 'HEAD'), 'utf8').trim();
    if (!head.startsWith('ref: ')) return head.slice(0, 7);
    const ref = head.slice(5);
    const common = fs.existsSync(path.join(gitDir, 'commondir')) ? path.resolve(gitDir, fs.readFileSync(path.join(gitDir, 'commondir'), 'utf8').trim()) : gitDir;
    for (const dir of [gitDir, common]) {
      try {
        return fs.readFileSync(path.join(dir, ref), 'utf8').trim().slice(0, 7);
      } catch {
        /* packed */
      }
    }
    const packed = fs.readFileSync(path.join(common, 'packed-refs'), 'utf8');
    const line = packed.split('\n').find((l) => l.endsWith(` ${ref}`));
    return line ? line.slice(0, 7) : 'unknown';
  } catch {
    return 'unknown';
  }
}

function mtime(p: string): string {
  try {
    return fs.statSync(p).mtime.toISOString();
  } catch {
    return '';
  }
}

export function versionInfo(): VersionInfo {
  const bin = runtimeBinary();
  let runtime: VersionInfo['Runtime'];
  const r = runtimeSync(['--version'], { stdin: 'pipe', timeout: 10_000 });
  const m = /version\s+(\S+)/.exec(r.stdout);
  if (r.status === 0 && m) {
    runtime = { Name: 'burrow-runtime', Version: m[1]!, OciVersion: /spec:\s*(\S+)/.exec(r.stdout)?.[1] ?? '', Path: bin, BuildTime: mtime(bin) };
  } else {
    const why = r.error ? (r.error as NodeJS.ErrnoException).code ?? r.error.message : (r.stderr || `exit status ${r.status}`).trim();
    runtime = { Name: 'burrow-runtime', Path: bin, Error: `cannot run ${bin} --version: ${why}` };
  }
  return {
    Client: {
      Version: VERSION,
      NodeVersion: process.version,
      GitCommit: gitCommit(),
      // When the TypeScript was compiled: the file this code runs from.
      BuildTime: mtime(__filename),
      Os: process.platform,
      Arch: goArch(process.arch),
    },
    Runtime: runtime,
  };
}

/** Go's time.ANSIC, which `docker version` uses for "Built". */
function ansic(iso: string): string {
  if (!iso) return 'unknown';
  const d = new Date(iso);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${days[d.getDay()]} ${months[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${d.getFullYear()}`;
}

export function renderVersion(v: VersionInfo): string {
  const rows = (title: string, kv: [string, string][]) => `${title}\n${kv.map(([k, val]) => ` ${`${k}:`.padEnd(18)} ${val}\n`).join('')}`;
  const c = v.Client;
  const client = rows('Client:', [
    ['Version', c.Version],
    ['Node version', c.NodeVersion],
    ['Git commit', c.GitCommit],
    ['Built', ansic(c.BuildTime)],
    ['OS/Arch', `${c.Os}/${c.Arch}`],
  ]);
  const rt = v.Runtime;
  const runtime =
    'Error' in rt
      ? rows(`Runtime: ${rt.Name}`, [['Path', rt.Path], ['Error', rt.Error]])
      : rows(`Runtime: ${rt.Name}`, [
          ['Version', rt.Version],
          ['OCI spec', rt.OciVersion],
          ['Built', ansic(rt.BuildTime)],
          ['Path', rt.Path],
        ]);
  return `${client}\n${runtime}`;
}

/** Exit 1 when the runtime cannot be run, as `docker version` does without its daemon. */
export async function versionCommand(opts: { format?: string }): Promise<number> {
  const v = versionInfo();
  if (opts.format === 'json' || opts.format === '{{json .}}') process.stdout.write(`${JSON.stringify(v)}\n`);
  else if (opts.format) {
    const { render } = await import('../format/table');
    process.stdout.write(`${render(opts.format, v as unknown as Record<string, unknown>)}\n`);
  } else process.stdout.write(renderVersion(v));
  if ('Error' in v.Runtime) {
    process.stderr.write(`Error: ${v.Runtime.Error}\n`);
    return 1;
  }
  return 0;
}
