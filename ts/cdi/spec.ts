/**
 * One CDI spec file read and checked: JSON, or YAML (`.yaml`/`.yml`, the subset yaml.ts reads),
 * spec versions 0.3.0 to 0.8.0. As the reference library
 * (container-device-interface's pkg/cdi) does, an unknown field is an error, and so is a field
 * newer than the version the file declares (deviceNodes' hostPath needs 0.5.0, annotations
 * 0.6.0, additionalGids and intelRdt 0.7.0, a mount's type 0.4.0): a vendor's file that says
 * 0.3.0 and uses hostPath was written for another reader, and guessing would hide that. Every
 * error names the file and the field (ECDI_SPEC_INVALID).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { isDeviceName, isKind } from './names';
import { parseYaml } from './yaml';

export interface CdiDeviceNode {
  path: string;
  hostPath?: string;
  type?: string;
  major?: number;
  minor?: number;
  fileMode?: number;
  permissions?: string;
  uid?: number;
  gid?: number;
}

export interface CdiMount {
  hostPath: string;
  containerPath: string;
  type?: string;
  options?: string[];
}

export interface CdiHook {
  hookName: string;
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

export interface CdiEdits {
  env?: string[];
  deviceNodes?: CdiDeviceNode[];
  mounts?: CdiMount[];
  hooks?: CdiHook[];
  additionalGids?: number[];
  /** Read and refused when used: resctrl is not for an unprivileged user (see edits.ts). */
  intelRdt?: Record<string, unknown>;
}

export interface CdiDevice {
  name: string;
  annotations?: Record<string, string>;
  containerEdits?: CdiEdits;
}

export interface CdiSpec {
  /** The file it was read from. */
  file: string;
  cdiVersion: string;
  kind: string;
  annotations?: Record<string, string>;
  devices: CdiDevice[];
  containerEdits?: CdiEdits;
}

export const SPEC_EXTENSIONS = ['.json', '.yaml', '.yml'];
export const MIN_VERSION = [0, 3, 0];
export const MAX_VERSION = [0, 8, 0];
export const HOOK_NAMES = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'];

type Json = unknown;

/** Reads and checks a spec file; ECDI_SPEC_INVALID with the file and field when it is wrong. */
export function readSpec(file: string): CdiSpec {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw invalid(file, `cannot be read: ${(err as Error).message}`);
  }
  return parseSpec(text, file);
}

/** The text of a spec file parsed (by the file's extension) and checked. */
export function parseSpec(text: string, file: string): CdiSpec {
  let doc: Json;
  const ext = path.extname(file);
  try {
    if (ext === '.json') doc = JSON.parse(text);
    else doc = parseYaml(text);
  } catch (err) {
    throw invalid(file, `is not valid ${ext === '.json' ? 'JSON' : 'YAML'}: ${(err as Error).message.split('\n')[0]}`);
  }
  return checkSpec(doc, file);
}

function invalid(file: string, msg: string): BurrowError {
  return new BurrowError('ECDI_SPEC_INVALID', `CDI spec ${file} ${msg}`, 'fix or remove the file (its vendor\'s tool writes it, e.g. nvidia-ctk cdi generate); see docs/cdi.md');
}

function parseVersion(v: string): number[] | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

function cmp(a: number[], b: number[]): number {
  for (let i = 0; i < 3; i++) if (a[i]! !== b[i]!) return a[i]! - b[i]!;
  return 0;
}

const vs = (v: number[]) => v.join('.');

/** Checks a parsed document against the spec's schema and its declared version. */
export function checkSpec(doc: Json, file: string): CdiSpec {
  const bad = (field: string, msg: string) => invalid(file, `${field}: ${msg}`);
  const obj = (v: Json, field: string, keys: string[]): Record<string, Json> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(field, 'must be an object');
    const o = v as Record<string, Json>;
    for (const k of Object.keys(o)) if (!keys.includes(k)) throw bad(field ? `${field}.${k}` : k, `unknown field (known: ${keys.join(', ')})`);
    return o;
  };
  const str = (v: Json, field: string): string => {
    if (typeof v !== 'string') throw bad(field, 'must be a string');
    return v;
  };
  const strs = (v: Json, field: string): string[] => {
    if (!Array.isArray(v)) throw bad(field, 'must be a list of strings');
    return v.map((x, i) => str(x, `${field}[${i}]`));
  };
  const int = (v: Json, field: string, min = 0): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw bad(field, `must be an integer ≥ ${min}`);
    return v;
  };
  const absPath = (v: Json, field: string): string => {
    const s = str(v, field);
    if (!s.startsWith('/')) throw bad(field, `${JSON.stringify(s)} must be an absolute path`);
    return s;
  };
  const record = (v: Json, field: string): Record<string, string> => {
    const o = obj(v, field, Object.keys((v ?? {})));
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, str(x, `${field}.${k}`)]));
  };

  const top = obj(doc, '', ['cdiVersion', 'kind', 'annotations', 'devices', 'containerEdits']);
  if (top.cdiVersion === undefined) throw bad('cdiVersion', 'is missing');
  const version = str(top.cdiVersion, 'cdiVersion');
  const ver = parseVersion(version);
  if (!ver) throw bad('cdiVersion', `${JSON.stringify(version)} is not a version (MAJOR.MINOR.PATCH)`);
  if (cmp(ver, MIN_VERSION) < 0 || cmp(ver, [MAX_VERSION[0]!, MAX_VERSION[1]!, Number.MAX_SAFE_INTEGER]) > 0) {
    throw bad('cdiVersion', `${version} is not one burrow reads (${vs(MIN_VERSION)} to ${vs(MAX_VERSION)})`);
  }
  const needs = (field: string, min: number[]) => {
    if (cmp(ver, min) < 0) throw bad(field, `needs cdiVersion ${vs(min)} or later, the file says ${version}`);
  };
  if (top.kind === undefined) throw bad('kind', 'is missing');
  const kind = str(top.kind, 'kind');
  if (!isKind(kind)) throw bad('kind', `${JSON.stringify(kind)} is not VENDOR/CLASS (e.g. vendor.com/device)`);
  // Dots in the class came with 0.6.0.
  if (kind.slice(kind.indexOf('/') + 1).includes('.')) needs('kind', [0, 6, 0]);

  const edits = (v: Json, field: string): CdiEdits => {
    const e = obj(v, field, ['env', 'deviceNodes', 'mounts', 'hooks', 'additionalGids', 'intelRdt']);
    const out: CdiEdits = {};
    if (e.env !== undefined) {
      out.env = strs(e.env, `${field}.env`);
      out.env.forEach((kv, i) => {
        if (kv.indexOf('=') <= 0) throw bad(`${field}.env[${i}]`, `${JSON.stringify(kv)} is not NAME=VALUE`);
      });
    }
    if (e.deviceNodes !== undefined) {
      if (!Array.isArray(e.deviceNodes)) throw bad(`${field}.deviceNodes`, 'must be a list');
      out.deviceNodes = e.deviceNodes.map((d, i) => {
        const f = `${field}.deviceNodes[${i}]`;
        const n = obj(d, f, ['path', 'hostPath', 'type', 'major', 'minor', 'fileMode', 'permissions', 'uid', 'gid']);
        if (n.path === undefined) throw bad(`${f}.path`, 'is missing');
        const node: CdiDeviceNode = { path: absPath(n.path, `${f}.path`) };
        if (n.hostPath !== undefined) {
          needs(`${f}.hostPath`, [0, 5, 0]);
          node.hostPath = absPath(n.hostPath, `${f}.hostPath`);
        }
        if (n.type !== undefined) {
          node.type = str(n.type, `${f}.type`);
          if (!['b', 'c', 'u', 'p'].includes(node.type)) throw bad(`${f}.type`, `${JSON.stringify(node.type)} is not b, c, u or p`);
        }
        if (n.permissions !== undefined) {
          node.permissions = str(n.permissions, `${f}.permissions`);
          if (node.permissions !== 'none' && !/^[rwm]*$/.test(node.permissions)) throw bad(`${f}.permissions`, `${JSON.stringify(node.permissions)} is not a combination of r, w and m`);
        }
        for (const k of ['major', 'minor', 'fileMode', 'uid', 'gid'] as const) if (n[k] !== undefined) node[k] = int(n[k], `${f}.${k}`, k === 'major' || k === 'minor' ? -1 : 0);
        return node;
      });
    }
    if (e.mounts !== undefined) {
      if (!Array.isArray(e.mounts)) throw bad(`${field}.mounts`, 'must be a list');
      out.mounts = e.mounts.map((m, i) => {
        const f = `${field}.mounts[${i}]`;
        const o = obj(m, f, ['hostPath', 'containerPath', 'type', 'options']);
        if (o.hostPath === undefined) throw bad(`${f}.hostPath`, 'is missing');
        if (o.containerPath === undefined) throw bad(`${f}.containerPath`, 'is missing');
        const mount: CdiMount = { hostPath: str(o.hostPath, `${f}.hostPath`), containerPath: absPath(o.containerPath, `${f}.containerPath`) };
        if (o.type !== undefined) {
          needs(`${f}.type`, [0, 4, 0]);
          mount.type = str(o.type, `${f}.type`);
        }
        if (o.options !== undefined) mount.options = strs(o.options, `${f}.options`);
        return mount;
      });
    }
    if (e.hooks !== undefined) {
      if (!Array.isArray(e.hooks)) throw bad(`${field}.hooks`, 'must be a list');
      out.hooks = e.hooks.map((h, i) => {
        const f = `${field}.hooks[${i}]`;
        const o = obj(h, f, ['hookName', 'path', 'args', 'env', 'timeout']);
        if (o.hookName === undefined) throw bad(`${f}.hookName`, 'is missing');
        if (o.path === undefined) throw bad(`${f}.path`, 'is missing');
        const hook: CdiHook = { hookName: str(o.hookName, `${f}.hookName`), path: absPath(o.path, `${f}.path`) };
        if (o.args !== undefined) hook.args = strs(o.args, `${f}.args`);
        if (o.env !== undefined) hook.env = strs(o.env, `${f}.env`);
        if (o.timeout !== undefined) hook.timeout = int(o.timeout, `${f}.timeout`, 1);
        return hook;
      });
    }
    if (e.additionalGids !== undefined) {
      needs(`${field}.additionalGids`, [0, 7, 0]);
      if (!Array.isArray(e.additionalGids)) throw bad(`${field}.additionalGids`, 'must be a list of group ids');
      out.additionalGids = e.additionalGids.map((g, i) => int(g, `${field}.additionalGids[${i}]`));
    }
    if (e.intelRdt !== undefined) {
      needs(`${field}.intelRdt`, [0, 7, 0]);
      out.intelRdt = obj(e.intelRdt, `${field}.intelRdt`, ['closID', 'l3CacheSchema', 'memBwSchema', 'schemata', 'enableMonitoring', 'enableCMT', 'enableMBM']);
    }
    return out;
  };

  const spec: CdiSpec = { file, cdiVersion: version, kind, devices: [] };
  if (top.annotations !== undefined) {
    needs('annotations', [0, 6, 0]);
    spec.annotations = record(top.annotations, 'annotations');
  }
  if (!Array.isArray(top.devices) || top.devices.length === 0) throw bad('devices', top.devices === undefined ? 'is missing' : 'must be a non-empty list');
  const seen = new Set<string>();
  spec.devices = top.devices.map((d, i) => {
    const f = `devices[${i}]`;
    const o = obj(d, f, ['name', 'annotations', 'containerEdits']);
    if (o.name === undefined) throw bad(`${f}.name`, 'is missing');
    const name = typeof o.name === 'number' ? String(o.name) : str(o.name, `${f}.name`);
    if (!isDeviceName(name)) throw bad(`${f}.name`, `${JSON.stringify(name)} is not a device name (letters, digits, _ - . :, starting and ending with a letter or digit)`);
    if (/^[0-9]/.test(name)) needs(`${f}.name`, [0, 5, 0]);
    if (seen.has(name)) throw bad(`${f}.name`, `device ${name} is defined twice`);
    seen.add(name);
    const dev: CdiDevice = { name };
    if (o.annotations !== undefined) {
      needs(`${f}.annotations`, [0, 6, 0]);
      dev.annotations = record(o.annotations, `${f}.annotations`);
    }
    if (o.containerEdits !== undefined) dev.containerEdits = edits(o.containerEdits, `${f}.containerEdits`);
    return dev;
  });
  if (top.containerEdits !== undefined) spec.containerEdits = edits(top.containerEdits, 'containerEdits');
  return spec;
}
