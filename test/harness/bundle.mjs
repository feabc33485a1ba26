// Builds OCI bundles for tests and benchmarks from Debian's busybox-static: a rootfs with
// busybox and a link per applet, /etc/passwd and /etc/group, and a config.json from
// `burrow-runtime spec --rootless` (run as the current user, so the mapping is to them),
// adjusted by the caller. Nothing is downloaded.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const RUNTIME = process.env.BURROW_RUNTIME || path.join(ROOT, 'target', 'release', 'burrow-runtime');
const BUSYBOX = '/bin/busybox';

let applets;
function appletList() {
  applets ??= execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  return applets;
}

/** Creates `dir/rootfs` with busybox; returns the rootfs path. */
export function makeRootfs(dir) {
  const rootfs = path.join(dir, 'rootfs');
  for (const d of ['bin', 'proc', 'sys', 'dev', 'etc', 'tmp', 'root']) fs.mkdirSync(path.join(rootfs, d), { recursive: true });
  fs.chmodSync(path.join(rootfs, 'tmp'), 0o1777);
  fs.copyFileSync(BUSYBOX, path.join(rootfs, 'bin', 'busybox'));
  fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const a of appletList()) {
    const p = path.join(rootfs, 'bin', a);
    if (a !== 'busybox' && !fs.existsSync(p)) fs.symlinkSync('busybox', p);
  }
  fs.writeFileSync(path.join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  fs.writeFileSync(path.join(rootfs, 'etc', 'group'), 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n');
  return rootfs;
}

/**
 * Makes a bundle in `dir`. `args` is the process; `edit(config)` may change anything else.
 * Returns the parsed config as written.
 */
export function makeBundle(dir, { args = ['true'], terminal = false, edit } = {}) {
  fs.mkdirSync(dir, { recursive: true });
  if (!fs.existsSync(path.join(dir, 'rootfs'))) makeRootfs(dir);
  fs.rmSync(path.join(dir, 'config.json'), { force: true });
  execFileSync(RUNTIME, ['spec', '--rootless', '--bundle', dir]);
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  config.process.args = args;
  config.process.terminal = terminal;
  config.root.readonly = false;
  if (edit) edit(config);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  return config;
}

/** The subordinate range of the current user, or null. */
export function ownSubuid(file = '/etc/subuid') {
  const { username, uid } = os.userInfo();
  if (!fs.existsSync(file)) return null;
  for (const l of fs.readFileSync(file, 'utf8').split('\n')) {
    const [who, start, count] = l.split(':');
    if ((who === username || who === String(uid)) && Number(count) > 0) return { start: Number(start), count: Number(count) };
  }
  return null;
}
