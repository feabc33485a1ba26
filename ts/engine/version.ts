/**
 * What this burrow is: its version, commit and build time, and the runtime it drives. Shared by
 * `burrow version` (ts/cli/commands/version.ts) and the API's `GET /version`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../host/paths';
import { runtimeBinary, runtimeSync } from '../runtime/client';
import { VERSION } from '../version';

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
