/**
 * The containerEdits of resolved CDI devices, checked against this host and applied to the OCI
 * spec burrow writes: env (replacing a variable of the same name, as the reference library's
 * editor does), mounts (after burrow's own, shallower destinations first), hooks (their stage is
 * the hookName), additionalGids, and the `cdi.k8s.io/` annotation naming the devices, so a
 * reader of config.json sees where the edits came from. Device nodes become `--device` entries
 * (ts/container/spec.ts): rootless, a node cannot be created, so the host's node is bound, and it
 * must exist and be openable here. What a spec names must exist when the container is created
 * (the spec's "resource does not exist" error, ECDI_RESOURCE); a startContainer hook runs inside
 * the container, so only the others are looked for on the host.
 *
 * ldconfig: a library a spec mounts is found by the dynamic loader only if the container's
 * /etc/ld.so.cache lists it. nvidia-ctk's specs carry their own createContainer hook for it
 * (`nvidia-cdi-hook update-ldcache`); for a spec without one, burrow adds the same kind of hook:
 * a createContainer hook (it runs after the mounts, before pivot_root, so both the host's
 * ldconfig and the container's root are in reach) that adds the library directories to the
 * image's /etc/ld.so.conf.d and runs the host's `ldconfig -r ROOTFS`. A hook, rather than an
 * ldconfig before the command: the command stays the user's, the image needs no ldconfig of its
 * own, and `burrow-runtime` driven by another engine with this config.json does the same.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { parseDevice, type DeviceSpec, type OciMount } from '../container/spec';
import type { Resolved } from './registry';
import { HOOK_NAMES, type CdiEdits, type CdiHook } from './spec';

export const ANNOTATION = 'cdi.k8s.io/burrow_devices';
/** The file burrow's ldconfig hook writes into the image's /etc/ld.so.conf.d. */
export const LDCONFIG_CONF = '/etc/ld.so.conf.d/000-burrow-cdi.conf';

interface OciHook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

/** What the devices ask for, checked on this host: kept in the container's options until its spec is written. */
export interface CdiPlan {
  devices: string[];
  env: string[];
  nodes: DeviceSpec[];
  mounts: OciMount[];
  hooks: Record<string, OciHook[]>;
  additionalGids: number[];
  /** Directories (container paths) of mounted libraries that burrow's ldconfig hook adds. */
  ldconfigDirs: string[];
}

function resource(dev: string, msg: string, fix?: string): BurrowError {
  return new BurrowError('ECDI_RESOURCE', `CDI device ${dev}: ${msg}`, fix ?? 'the device\'s driver or spec is not installed as the spec says: regenerate the spec (e.g. nvidia-ctk cdi generate) or fix the path');
}

/** The edits of the resolved devices, in order: each spec's common edits once, then the device's own. */
export function plan(resolved: Resolved[], warn: (m: string) => void): CdiPlan {
  const p: CdiPlan = { devices: resolved.map((r) => r.qualified), env: [], nodes: [], mounts: [], hooks: {}, additionalGids: [], ldconfigDirs: [] };
  const specsDone = new Set<string>();
  const vendorLdcache: boolean[] = [];
  const add = (e: CdiEdits | undefined, dev: string) => {
    if (!e) return;
    if (e.intelRdt) throw resource(dev, 'asks for Intel RDT (resctrl) settings, which burrow does not apply', 'use a spec without intelRdt, or a runtime run by root that applies resctrl');
    for (const kv of e.env ?? []) {
      const name = kv.slice(0, kv.indexOf('='));
      p.env = p.env.filter((x) => !x.startsWith(`${name}=`));
      p.env.push(kv);
    }
    for (const n of e.deviceNodes ?? []) {
      const host = n.hostPath ?? n.path;
      const perms = !n.permissions || n.permissions === 'none' ? 'rwm' : [...new Set(n.permissions)].join('');
      let d: DeviceSpec;
      try {
        d = parseDevice(`${host}:${n.path}:${perms}`);
      } catch (err) {
        throw resource(dev, `device node ${host}: ${(err as Error).message.replace(/^--device \S+: /, '')}`, (err as BurrowError).fix);
      }
      const want = n.type === 'u' ? 'c' : n.type;
      if (want && want !== d.type) throw resource(dev, `device node ${host} is a ${d.type === 'b' ? 'block' : 'character'} device, the spec says type ${n.type}`);
      if ((n.major !== undefined && n.major >= 0 && n.major !== d.major) || (n.minor !== undefined && n.minor >= 0 && n.minor !== d.minor)) {
        throw resource(dev, `device node ${host} is ${d.major}:${d.minor}, the spec says ${n.major ?? '*'}:${n.minor ?? '*'}`);
      }
      p.nodes = p.nodes.filter((x) => x.path !== d.path);
      p.nodes.push({ ...d, ...(n.fileMode !== undefined ? { fileMode: n.fileMode & 0o777 } : {}), ...(n.uid !== undefined ? { uid: n.uid } : {}), ...(n.gid !== undefined ? { gid: n.gid } : {}) });
    }
    for (const m of e.mounts ?? []) {
      const opts = m.options ?? [];
      const bind = !m.type || m.type === 'bind' || m.type === 'none' || opts.includes('bind') || opts.includes('rbind');
      if (bind && !fs.existsSync(m.hostPath)) throw resource(dev, `mount source ${m.hostPath} does not exist`);
      p.mounts.push(
        bind
          ? { destination: m.containerPath, type: 'bind', source: m.hostPath, options: opts.includes('bind') || opts.includes('rbind') ? opts : ['rbind', ...opts] }
          : { destination: m.containerPath, type: m.type!, source: m.hostPath, options: opts },
      );
    }
    for (const h of e.hooks ?? []) addHook(p, h, dev, warn);
    vendorLdcache.push((e.hooks ?? []).some((h) => h.hookName === 'createContainer' && (h.args ?? []).includes('update-ldcache')));
    for (const g of e.additionalGids ?? []) if (g !== 0 && !p.additionalGids.includes(g)) p.additionalGids.push(g);
  };
  for (const r of resolved) {
    if (!specsDone.has(r.spec.file)) {
      specsDone.add(r.spec.file);
      add(r.spec.containerEdits, r.qualified);
    }
    add(r.device.containerEdits, r.qualified);
  }
  // Shallower destinations first (the reference library's order), the spec's order otherwise.
  p.mounts = p.mounts.map((m, i) => ({ m, i })).sort((a, b) => depth(a.m.destination) - depth(b.m.destination) || a.i - b.i).map((x) => x.m);
  if (!vendorLdcache.some(Boolean)) p.ldconfigDirs = libraryDirs(p.mounts);
  return p;
}

function depth(p: string): number {
  return path.normalize(p).split('/').filter(Boolean).length;
}

function addHook(p: CdiPlan, h: CdiHook, dev: string, warn: (m: string) => void): void {
  if (!HOOK_NAMES.includes(h.hookName)) {
    warn(`CDI device ${dev}: hook ${h.path} has hookName ${h.hookName}, which is no OCI stage (${HOOK_NAMES.join(', ')}): ignored`);
    return;
  }
  // A startContainer hook is a path inside the container; the others run on the host.
  if (h.hookName !== 'startContainer') {
    try {
      fs.accessSync(h.path, fs.constants.X_OK);
    } catch {
      throw resource(dev, `${h.hookName} hook ${h.path} ${fs.existsSync(h.path) ? 'is not executable' : 'does not exist'}`);
    }
  }
  (p.hooks[h.hookName] ??= []).push({ path: h.path, ...(h.args ? { args: h.args } : {}), ...(h.env ? { env: h.env } : {}), ...(h.timeout ? { timeout: h.timeout } : {}) });
}

const SHARED_OBJECT = /\.so(\.\d+)*$/;

/** Container directories that mounted shared libraries are in: a mounted library's, or a mounted directory with libraries. */
function libraryDirs(mounts: OciMount[]): string[] {
  const dirs: string[] = [];
  const push = (d: string) => {
    if (!dirs.includes(d)) dirs.push(d);
  };
  for (const m of mounts) {
    if (m.type !== 'bind') continue;
    try {
      const st = fs.statSync(m.source);
      if (st.isFile() && SHARED_OBJECT.test(m.source)) push(path.dirname(m.destination));
      else if (st.isDirectory() && fs.readdirSync(m.source).some((f) => SHARED_OBJECT.test(f))) push(m.destination);
    } catch {
      /* checked above: a source that went away fails at the mount */
    }
  }
  return dirs;
}

/** The host's ldconfig, or undefined when it has none. */
function hostLdconfig(): string | undefined {
  return ['/sbin/ldconfig', '/usr/sbin/ldconfig', '/usr/bin/ldconfig'].find((p) => {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * Applies a plan's edits (all but the device nodes, which buildSpec took) to the OCI spec.
 * `rootfs` is the container's root as the createContainer hook sees it (bundle/rootfs).
 */
export function applyPlan(spec: Record<string, unknown>, p: CdiPlan, rootfs: string, warn: (m: string) => void): void {
  const proc = spec.process as { env: string[]; user: { additionalGids?: number[] } };
  for (const kv of p.env) {
    const name = kv.slice(0, kv.indexOf('='));
    proc.env = [...proc.env.filter((x) => !x.startsWith(`${name}=`)), kv];
  }
  (spec.mounts as OciMount[]).push(...p.mounts);
  if (p.additionalGids.length) proc.user.additionalGids = [...new Set([...(proc.user.additionalGids ?? []), ...p.additionalGids])];
  const hooks = (spec.hooks ??= {}) as Record<string, OciHook[]>;
  for (const [stage, list] of Object.entries(p.hooks)) (hooks[stage] ??= []).push(...list);
  if (p.ldconfigDirs.length) {
    const ldconfig = hostLdconfig();
    if (!ldconfig) warn(`CDI devices ${p.devices.join(', ')} mount libraries in ${p.ldconfigDirs.join(', ')}, but this host has no ldconfig to add them to the container's loader cache: set LD_LIBRARY_PATH in the container`);
    else {
      // $1 the container's root, then the directories; the conf file keeps them for a later ldconfig inside.
      const script = `root=$1; shift; if [ -d "$root/etc/ld.so.conf.d" ]; then printf '%s\\n' "$@" > "$root${LDCONFIG_CONF}" || exit 1; fi; exec ${ldconfig} -r "$root" "$@"`;
      (hooks.createContainer ??= []).push({ path: '/bin/sh', args: ['sh', '-c', script, 'burrow-cdi-ldconfig', rootfs, ...p.ldconfigDirs] });
    }
  }
  const annotations = (spec.annotations ??= {}) as Record<string, string>;
  annotations[ANNOTATION] = p.devices.join(',');
}
