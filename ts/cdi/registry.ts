/**
 * The CDI spec directories and the devices they define: which directories (BURROW_CDI_SPEC_DIRS,
 * else `[containers] cdi_spec_dirs` of the config file, else /etc/cdi then /var/run/cdi, as
 * podman's containers.conf `cdi_spec_dirs` defaults), and which spec defines a requested device.
 *
 * The rules are the reference library's: the files of a directory (not its subdirectories) whose
 * names end in .json or .yaml (and .yml); a later directory has the higher priority, so a spec
 * in /var/run/cdi (written at boot by a driver) overrides one in /etc/cdi; two specs of the same
 * priority defining one device conflict, an error only when that device is asked for. A spec
 * that does not parse is an error when its kind is asked for (when its kind cannot be read
 * either, when any device is asked for that nothing else defines) and a warning otherwise: one
 * vendor's broken file must not take every other vendor's devices away.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { parseQualified } from './names';
import { readSpec, SPEC_EXTENSIONS, type CdiDevice, type CdiSpec } from './spec';

export const DEFAULT_SPEC_DIRS = ['/etc/cdi', '/var/run/cdi'];

/** The spec directories in increasing priority, and where that list came from (for messages). */
export function specDirs(env: Record<string, string | undefined> = process.env): { dirs: string[]; from: string } {
  if (env.BURROW_CDI_SPEC_DIRS) return { dirs: env.BURROW_CDI_SPEC_DIRS.split(':').filter(Boolean), from: 'BURROW_CDI_SPEC_DIRS' };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { loadConfig } = require('../config/config') as typeof import('../config/config');
  const cfg = loadConfig(env);
  if (cfg.containers.cdiSpecDirs) return { dirs: cfg.containers.cdiSpecDirs, from: `cdi_spec_dirs in ${cfg.file}` };
  return { dirs: DEFAULT_SPEC_DIRS, from: 'the default' };
}

interface Broken {
  file: string;
  /** The kind the file claims, when that much could be read. */
  kind?: string;
  error: BurrowError;
}

/** What the spec directories hold: the readable specs with their priorities, and the broken files. */
export interface Registry {
  dirs: string[];
  from: string;
  specs: { spec: CdiSpec; priority: number }[];
  broken: Broken[];
}

export function scan(dirs: { dirs: string[]; from: string } = specDirs()): Registry {
  const reg: Registry = { ...dirs, specs: [], broken: [] };
  dirs.dirs.forEach((dir, priority) => {
    let names: fs.Dirent[];
    try {
      names = fs.readdirSync(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new BurrowError('ECDI_SPEC_INVALID', `CDI spec directory ${dir} cannot be read: ${(err as Error).message}`);
    }
    for (const d of names.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (!SPEC_EXTENSIONS.includes(path.extname(d.name)) || d.isDirectory()) continue;
      const file = path.join(dir, d.name);
      try {
        reg.specs.push({ spec: readSpec(file), priority });
      } catch (err) {
        if (!(err instanceof BurrowError)) throw err;
        reg.broken.push({ file, error: err, ...kindOf(file) });
      }
    }
  });
  return reg;
}

/** The `kind` of a file that did not validate, read loosely for the error rule above. */
function kindOf(file: string): { kind?: string } {
  try {
    const m = /(?:^|[\s{,])["']?kind["']?\s*:\s*["']?([^"'\s,}]+)/.exec(fs.readFileSync(file, 'utf8'));
    return m?.[1] ? { kind: m[1] } : {};
  } catch {
    return {};
  }
}

/** A requested device found: its spec (whose containerEdits apply too) and itself. */
export interface Resolved {
  qualified: string;
  spec: CdiSpec;
  device: CdiDevice;
}

/**
 * The devices for `VENDOR/CLASS=NAME` requests, in the order asked. `NAME` `all` is the spec's
 * own device `all` when it has one (nvidia-ctk writes one), else every device of the kind.
 */
export function resolve(reg: Registry, requests: string[], warn: (m: string) => void): Resolved[] {
  const out: Resolved[] = [];
  const warned = new Set<string>();
  for (const req of requests) {
    const q = parseQualified(req);
    if (!q) {
      throw new BurrowError('EUSAGE', `invalid --device ${req}: a CDI device is VENDOR/CLASS=NAME (e.g. nvidia.com/gpu=0), NAME letters, digits, _ - . and :`);
    }
    const broken = reg.broken.filter((b) => b.kind === q.kind);
    if (broken.length) throw broken[0]!.error;
    const ofKind = reg.specs.filter((s) => s.spec.kind === q.kind);
    const pick = (name: string): Resolved | undefined => {
      const defs = ofKind.filter((s) => s.spec.devices.some((d) => d.name === name));
      if (!defs.length) return undefined;
      const top = Math.max(...defs.map((d) => d.priority));
      const best = defs.filter((d) => d.priority === top);
      if (best.length > 1) {
        throw new BurrowError('ECDI_CONFLICT', `CDI device ${q.kind}=${name} is defined by ${best.length} specs of the same priority: ${best.map((b) => b.spec.file).join(' and ')}`, 'remove one of the files, or move it to a directory of another priority (a later one in the spec directories wins)');
      }
      const spec = best[0]!.spec;
      return { qualified: `${q.kind}=${name}`, spec, device: spec.devices.find((d) => d.name === name)! };
    };
    let found: Resolved[];
    const own = pick(q.name);
    if (own) found = [own];
    else if (q.name === 'all' && ofKind.length) {
      const names = [...new Set(ofKind.flatMap((s) => s.spec.devices.map((d) => d.name)))].sort();
      found = names.map((n) => pick(n)!);
    } else {
      // A broken file whose kind could not be read may be the one that defines it.
      const unknown = reg.broken.filter((b) => b.kind === undefined);
      if (unknown.length) throw unknown[0]!.error;
      const where = reg.dirs.join(', ');
      const known = ofKind.flatMap((s) => s.spec.devices.map((d) => d.name));
      throw new BurrowError(
        'ECDI_UNKNOWN_DEVICE',
        ofKind.length
          ? `CDI device ${req} is not defined: the specs of kind ${q.kind} define ${[...new Set(known)].sort().join(', ')} (spec directories: ${where}, from ${reg.from})`
          : `CDI device ${req}: no CDI spec of kind ${q.kind} in ${where} (from ${reg.from})`,
        ofKind.length ? `ask for one of those, or ${q.kind}=all` : `install the vendor's CDI spec there (for NVIDIA GPUs: nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml), or set BURROW_CDI_SPEC_DIRS to the directory that has it`,
      );
    }
    for (const r of found) if (!out.some((o) => o.qualified === r.qualified)) out.push(r);
  }
  for (const b of reg.broken) {
    if (warned.has(b.file)) continue;
    warned.add(b.file);
    warn(`${b.error.message} (ignored: no device asked for is of its kind)`);
  }
  return out;
}
