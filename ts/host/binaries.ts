/**
 * burrow's two binaries in `burrow info`: burrow-runtime, which runs every container (the probe
 * ran it for its namespace tests), and burrow-monitor, the small binary the processes burrow
 * leaves running are run from (each detached or attached container's monitor and the network
 * owner: ts/host/paths.ts monitorBinary). Without burrow-monitor, only foreground runs work.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { monitorBinary } from './paths';
import type { Check, HostReport } from './report';

export interface BinaryInfo {
  path: string;
  /** `X` of its `--version` line (`burrow-monitor version X`), or null when it could not be run. */
  version: string | null;
  /** Why it could not be run. */
  error: string | null;
}

/** A binary's path and version, from its `--version`. */
export function binaryInfo(bin: string, name: string): BinaryInfo {
  try {
    fs.accessSync(bin, fs.constants.X_OK);
  } catch (err) {
    return { path: bin, version: null, error: (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : `not executable (${(err as Error).message})` };
  }
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] });
  const m = new RegExp(`^${name} version (\\S+)`, 'm').exec(r.stdout ?? '');
  if (r.error || r.status !== 0 || !m) return { path: bin, version: null, error: `\`${bin} --version\` failed: ${r.error?.message ?? (r.stderr.trim() || `exit status ${String(r.status)}`)}` };
  return { path: bin, version: m[1]!, error: null };
}

const FIX = 'run `npm run build:rust` (it builds burrow-runtime and burrow-monitor beside it), or set BURROW_MONITOR to the path of a burrow-monitor of the same version';

/**
 * The report with the binaries: `runtimeBinary.version` and `monitorBinary` for `--format json`,
 * and a line for each in a Runtime section (checks `runtime.binary` and `runtime.monitor`).
 */
export function withBinaries(report: HostReport, monitor = binaryInfo(monitorBinary(), 'burrow-monitor')): HostReport {
  const rt = report.runtimeBinary;
  const rtInfo = rt.path ? binaryInfo(rt.path, 'burrow-runtime') : undefined;
  const runtimeCheck: Check = rt.ran
    ? { id: 'runtime.binary', title: 'burrow-runtime', verdict: 'ok', evidence: `${rt.path ?? ''}${rtInfo?.version ? ` (version ${rtInfo.version})` : ''}: runs every container` }
    : { id: 'runtime.binary', title: 'burrow-runtime', verdict: 'fail', evidence: `${rt.path ?? 'not found'}: ${rt.error ?? rtInfo?.error ?? 'it did not run'}`, fix: 'run `npm run build:rust`, or set BURROW_RUNTIME to the path of burrow-runtime' };
  let monitorCheck: Check;
  if (monitor.error) {
    monitorCheck = {
      id: 'runtime.monitor',
      title: 'burrow-monitor',
      verdict: 'warn',
      evidence: `${monitor.path}: ${monitor.error}; detached (-d) and -it containers, restart policies and user-defined networks need it (their monitors and the network owner run from it); foreground runs work without it`,
      fix: FIX,
    };
  } else if (rtInfo?.version && monitor.version !== rtInfo.version) {
    monitorCheck = { id: 'runtime.monitor', title: 'burrow-monitor', verdict: 'warn', evidence: `${monitor.path} (version ${monitor.version ?? '?'}) is not of burrow-runtime's version ${rtInfo.version}: a monitor of another build may not speak its protocol`, fix: FIX };
  } else {
    monitorCheck = { id: 'runtime.monitor', title: 'burrow-monitor', verdict: 'ok', evidence: `${monitor.path} (version ${monitor.version ?? '?'}): container monitors and the network owner run from it` };
  }
  const checks = [...report.checks];
  // After the checks of the host, before the runtime directory's.
  const at = checks.findIndex((c) => c.id === 'runtime-dir');
  checks.splice(at < 0 ? checks.length : at, 0, runtimeCheck, monitorCheck);
  return { ...report, checks, runtimeBinary: { ...rt, version: rtInfo?.version ?? null }, monitorBinary: monitor };
}
