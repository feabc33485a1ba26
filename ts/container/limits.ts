/**
 * Resource limits (`--memory`, `--cpus`, `--pids-limit`, …) to OCI resources, and the honesty
 * check (DESIGN.md, "cgroups"): a limit is only accepted when this host lets this user enforce
 * it — cgroup v2 with the controller delegated — otherwise `run` fails before anything is
 * created, naming the missing controller and the fix. `--cgroups=disabled` (or
 * BURROW_CGROUPS=disabled) runs without the limits after one warning, as an explicit opt-out.
 */
import { BurrowError } from '../errors';

export interface LimitFlags {
  memory?: string;
  memorySwap?: string;
  memoryReservation?: string;
  oomKillDisable?: boolean;
  cpus?: string;
  cpuShares?: string;
  cpuQuota?: string;
  cpuPeriod?: string;
  cpusetCpus?: string;
  cpusetMems?: string;
  pidsLimit?: string;
  blkioWeight?: string;
  deviceReadBps?: string[];
  deviceWriteBps?: string[];
  deviceReadIops?: string[];
  deviceWriteIops?: string[];
  cgroupConf?: string[];
  cgroups?: string;
}

/** `/dev/sda:1mb`: the device's major:minor (from the host's node) and the rate. */
export function parseThrottle(spec: string, flag: string, bytes: boolean, statDev: (p: string) => { major: number; minor: number } = devOf): { major: number; minor: number; rate: number } {
  const i = spec.lastIndexOf(':');
  if (i <= 0) throw new BurrowError('EUSAGE', `invalid ${flag} ${spec}: want DEVICE:${bytes ? 'RATE (e.g. /dev/sda:1mb)' : 'N (e.g. /dev/sda:100)'}`);
  const dev = spec.slice(0, i);
  const v = spec.slice(i + 1);
  const rate = bytes ? parseBytes(v, flag) : int(v, flag);
  if (rate <= 0) throw new BurrowError('EUSAGE', `invalid ${flag} ${spec}: the rate must be positive`);
  return { ...statDev(dev), rate };
}

function devOf(p: string): { major: number; minor: number } {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fs = require('node:fs') as typeof import('node:fs');
  let st;
  try {
    st = fs.statSync(p);
  } catch (e) {
    throw new BurrowError('EUSAGE', `${p}: ${(e as Error).message}`, 'name a block device of this host, e.g. /dev/sda');
  }
  if (!st.isBlockDevice()) throw new BurrowError('EUSAGE', `${p} is not a block device`, 'name a block device of this host, e.g. /dev/sda');
  return { major: Math.floor(st.rdev / 256) & 0xfff, minor: (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00) };
}

export interface CgroupInfo {
  mode: string;
  enforceable: string[];
  delegationRoot: string | null;
  manager: string;
}

/** Docker's size syntax: 512, 64k, 32m, 1g (binary units). */
export function parseBytes(s: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)([bkmg]?)b?$/i.exec(s.trim());
  if (!m) throw new BurrowError('EUSAGE', `invalid ${flag} ${s}: want a size like 512m or 1g`);
  const mult = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'b' | 'k' | 'm' | 'g'];
  return Math.floor(Number(m[1]) * mult);
}

function int(s: string, flag: string): number {
  if (!/^-?\d+$/.test(s.trim())) throw new BurrowError('EUSAGE', `invalid ${flag} ${s}: want an integer`);
  return Number(s);
}

export interface Resources {
  resources: Record<string, unknown>;
  /** Controllers the limits need. */
  needs: string[];
}

export function toResources(f: LimitFlags): Resources {
  const r: Record<string, Record<string, unknown>> = {};
  const needs = new Set<string>();
  const mem = (k: string, v: number | boolean) => ((r.memory ??= {})[k] = v);
  if (f.memory !== undefined) {
    mem('limit', parseBytes(f.memory, '--memory'));
    needs.add('memory');
  }
  if (f.memorySwap !== undefined) {
    mem('swap', f.memorySwap === '-1' ? -1 : parseBytes(f.memorySwap, '--memory-swap'));
    needs.add('memory');
  }
  if (f.memoryReservation !== undefined) {
    mem('reservation', parseBytes(f.memoryReservation, '--memory-reservation'));
    needs.add('memory');
  }
  if (f.oomKillDisable) {
    mem('disableOOMKiller', true);
    needs.add('memory');
  }
  const cpu = (k: string, v: number | string) => ((r.cpu ??= {})[k] = v);
  if (f.cpus !== undefined) {
    const n = Number(f.cpus);
    if (!(n > 0)) throw new BurrowError('EUSAGE', `invalid --cpus ${f.cpus}: want a positive number such as 0.5`);
    cpu('period', 100000);
    cpu('quota', Math.round(n * 100000));
    needs.add('cpu');
  }
  if (f.cpuShares !== undefined) {
    cpu('shares', int(f.cpuShares, '--cpu-shares'));
    needs.add('cpu');
  }
  if (f.cpuQuota !== undefined) {
    cpu('quota', int(f.cpuQuota, '--cpu-quota'));
    needs.add('cpu');
  }
  if (f.cpuPeriod !== undefined) {
    cpu('period', int(f.cpuPeriod, '--cpu-period'));
    needs.add('cpu');
  }
  if (f.cpusetCpus !== undefined) {
    cpu('cpus', f.cpusetCpus);
    needs.add('cpuset');
  }
  if (f.cpusetMems !== undefined) {
    cpu('mems', f.cpusetMems);
    needs.add('cpuset');
  }
  if (f.pidsLimit !== undefined) {
    r.pids = { limit: int(f.pidsLimit, '--pids-limit') };
    needs.add('pids');
  }
  if (f.blkioWeight !== undefined) {
    (r.blockIO ??= {}).weight = int(f.blkioWeight, '--blkio-weight');
    needs.add('io');
  }
  const throttles: [string[] | undefined, string, string, boolean][] = [
    [f.deviceReadBps, '--device-read-bps', 'throttleReadBpsDevice', true],
    [f.deviceWriteBps, '--device-write-bps', 'throttleWriteBpsDevice', true],
    [f.deviceReadIops, '--device-read-iops', 'throttleReadIOPSDevice', false],
    [f.deviceWriteIops, '--device-write-iops', 'throttleWriteIOPSDevice', false],
  ];
  for (const [list, flag, key, bytes] of throttles) {
    if (!list?.length) continue;
    (r.blockIO ??= {})[key] = list.map((d) => parseThrottle(d, flag, bytes));
    needs.add('io');
  }
  for (const kv of f.cgroupConf ?? []) {
    const m = /^([a-z]+)\.([a-z_.]+)=(.*)$/.exec(kv);
    if (!m) throw new BurrowError('EUSAGE', `invalid --cgroup-conf ${kv}: want a cgroup v2 file and a value, e.g. memory.high=67108864`);
    (r.unified ??= {})[`${m[1]}.${m[2]}`] = m[3]!;
    if (['memory', 'cpu', 'cpuset', 'io', 'pids', 'hugetlb'].includes(m[1]!)) needs.add(m[1]!);
  }
  return { resources: r, needs: [...needs] };
}

export const DELEGATE_FIX =
  'use cgroup v2 with the controllers delegated to your user (an administrator adds /etc/systemd/system/user@.service.d/delegate.conf with "[Service] Delegate=cpu cpuset io memory pids"), or pass --cgroups=disabled to run without the limits';

/**
 * Checks that every needed controller is enforceable. Returns false when the user opted out
 * (the limits are then dropped after a warning).
 */
export function checkEnforceable(needs: string[], info: CgroupInfo, optOut: boolean, warn: (message: string) => void = (m) => process.stderr.write(`burrow: warning: ${m}\n`)): boolean {
  if (needs.length === 0) return true;
  const missing = needs.filter((c) => !info.enforceable.includes(c));
  if (missing.length === 0) return true;
  const why =
    info.mode !== 'unified'
      ? `this host's cgroup hierarchy is ${info.mode}: the ${missing.join(', ')} controller${missing.length > 1 ? 's are' : ' is'} not available to you in cgroup v2`
      : `the ${missing.join(', ')} controller${missing.length > 1 ? 's are' : ' is'} not delegated to you${info.delegationRoot ? ` (delegated root ${info.delegationRoot})` : ''}`;
  if (optOut) {
    warn(`--cgroups=disabled: running WITHOUT the requested limits (${why})`);
    return false;
  }
  throw new BurrowError('ELIMIT_UNENFORCEABLE', `cannot enforce the requested limits: ${why}`, DELEGATE_FIX);
}
