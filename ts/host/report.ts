/**
 * The host report produced by burrow-core's probe (`burrow info --format json`). The shape is a
 * stable interface documented in docs/info-schema.md; this file is its TypeScript mirror and the
 * guard that checks it where it enters from the native addon.
 */
import { BurrowError } from '../errors';

export type Verdict = 'ok' | 'info' | 'warn' | 'fail';

export interface Check {
  id: string;
  title: string;
  verdict: Verdict;
  evidence: string;
  fix?: string;
}

export interface IdRange {
  start: number;
  count: number;
}

export interface MapHelper {
  path: string | null;
  privilege: 'setuid' | 'file-capabilities' | 'none';
  usable: boolean;
}

export interface Tool {
  path: string;
  version: string | null;
}

export interface HostReport {
  schemaVersion: 1;
  uid: number;
  gid: number;
  rootless: boolean;
  kernel: {
    release: string;
    version: [number, number, number];
    rootlessOverlay: boolean;
    clone3: boolean;
    cloneIntoCgroup: boolean;
    idmappedMounts: boolean;
  };
  userns: {
    maxUserNamespaces: number | null;
    unprivilegedUsernsClone: number | null;
    apparmorRestrictUnprivilegedUserns: number | null;
    created: boolean | null;
    error: string | null;
  };
  idmap: {
    user: string | null;
    uid: number;
    gid: number;
    subuid: IdRange[];
    subgid: IdRange[];
    source: 'getsubids' | 'files';
    newuidmap: MapHelper;
    newgidmap: MapHelper;
    mode: 'subuid' | 'single';
    reason: string;
    containerIds: number;
    /** A range of 65536 ids nobody has in /etc/subuid and /etc/subgid (the fix's); null when none fits. */
    suggested: IdRange | null;
  };
  storage: {
    root: string;
    examined: string;
    fsType: string;
    fsMagic: string;
    networkFs: boolean;
    writable: boolean;
    fuseOverlayfs: string | null;
    fuseOverlayfsVersion: string | null;
    devFuseUsable: boolean;
    nativeOverlay: boolean | null;
    nativeOverlayError: string | null;
    driver: 'overlay' | 'fuse-overlayfs' | 'copy';
    reason: string;
    /** For a store on a network filesystem: the directory of this machine that takes its layers. */
    local: { dir: string; examined: string; fsType: string; writable: boolean } | null;
    /** How the store keeps images for `run` (ts/storage/image-format.ts); added by `info`, not the probe. */
    imageFormat?: { format: 'layers' | 'squashfs'; setting: 'auto' | 'layers' | 'squashfs'; from: string; fs: string; reason: string };
  };
  network: {
    slirp4netns: Tool | null;
    pasta: Tool | null;
    devNetTunExists: boolean;
    devNetTunUsable: boolean;
    devNetTunMode: string | null;
    defaultMode: 'slirp4netns' | 'pasta' | 'none';
    reason: string;
  };
  cgroups: {
    mode: 'unified' | 'hybrid' | 'legacy' | 'none';
    v2Mount: string | null;
    v1Controllers: string[];
    ownCgroup: string | null;
    delegationRoot: string | null;
    delegationSource: 'own-cgroup' | 'systemd-user-service' | 'none';
    availableControllers: string[];
    delegatedControllers: string[];
    systemdUserManager: boolean;
    /** Why no systemd user manager can be asked for a scope; null when one can. */
    systemdUserManagerWhyNot: string | null;
    busAddress: string | null;
    manager: 'systemd' | 'cgroupfs' | 'none';
    enforceable: string[];
    notEnforceable: string[];
  };
  runtimeDir: {
    xdgRuntimeDir: string | null;
    usable: boolean;
    problem: string | null;
    chosen: string;
  };
  runtimeBinary: {
    path: string | null;
    ran: boolean;
    error: string | null;
    /** Its `--version` (added by `burrow info`, not the probe: ts/host/binaries.ts). */
    version?: string | null;
  };
  /** burrow-monitor's path and version, or why it cannot run (added by `burrow info`). */
  monitorBinary?: { path: string; version: string | null; error: string | null };
  checks: Check[];
  canRunContainers: boolean;
}

const VERDICTS: ReadonlySet<string> = new Set(['ok', 'info', 'warn', 'fail']);
const SECTIONS = ['kernel', 'userns', 'idmap', 'storage', 'network', 'cgroups', 'runtimeDir', 'runtimeBinary'] as const;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCheck(v: unknown): v is Check {
  return (
    isObject(v) &&
    typeof v.id === 'string' &&
    typeof v.title === 'string' &&
    typeof v.verdict === 'string' &&
    VERDICTS.has(v.verdict) &&
    typeof v.evidence === 'string' &&
    (v.fix === undefined || typeof v.fix === 'string')
  );
}

/** Parses and checks the report's JSON. Throws EPROBE_INVALID when the shape is not the documented one. */
export function parseHostReport(json: string): HostReport {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch (err) {
    throw new BurrowError('EPROBE_INVALID', `the host probe returned invalid JSON: ${(err as Error).message}`);
  }
  const bad = (why: string): never => {
    throw new BurrowError('EPROBE_INVALID', `the host probe returned an unexpected report: ${why}`);
  };
  if (!isObject(v)) return bad('not an object');
  if (v.schemaVersion !== 1) return bad(`schemaVersion ${String(v.schemaVersion)}, expected 1`);
  for (const s of SECTIONS) if (!isObject(v[s])) bad(`missing section ${s}`);
  if (typeof v.uid !== 'number' || typeof v.canRunContainers !== 'boolean') bad('missing uid or canRunContainers');
  if (!Array.isArray(v.checks) || !v.checks.every(isCheck)) bad('malformed checks');
  return v as unknown as HostReport;
}
