#!/usr/bin/env node
// Boots a throwaway Linux VM with a pure cgroup v2 hierarchy and runs a shell script in it as the
// unprivileged test user, inside a subtree delegated the way systemd delegates user@UID.service.
// The host here has a hybrid layout whose v2 tree has only hugetlb, so real v2 enforcement can
// only be seen in a guest (DESIGN.md, "cgroups").
//
// The guest is Debian's kernel (the linux-image-*-amd64 package unpacked with dpkg -x, never
// installed) with a busybox initramfs that mounts the host's / read-only over virtio 9p under a
// tmpfs overlay, so the guest runs this checkout's binaries and the host's node without copying
// anything (test/vm/initramfs-init.sh, then test/vm/guest-init.sh). qemu runs with TCG: KVM is
// not usable on these machines. Kernel and initramfs are prepared once in a cache directory
// outside the checkout and reused.
//
//   node test/vm/run-vm.mjs [--controllers "memory pids"] [--systemd] [--timeout 180] [--prepare] -- 'shell command'
//   node test/vm/run-vm.mjs --script FILE
// prints the guest's output and exits with the script's status (124 on timeout, 125 when the VM
// could not run it).
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const INIT = path.join(HERE, 'initramfs-init.sh');
const STAGE2 = path.join(HERE, 'guest-init.sh');
const BUSYBOX = '/bin/busybox';
export const QEMU = process.env.BURROW_VM_QEMU || 'qemu-system-x86_64';
export const ALL_CONTROLLERS = ['cpu', 'cpuset', 'io', 'memory', 'pids'];
/**
 * virtio PCI, 9p over virtio, overlayfs, and virtio-blk for a scratch disk (io limits need a
 * block device): in load order (Debian builds them as modules).
 */
const MODULES = ['virtio_ring', 'virtio', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev', 'virtio_pci', 'netfs', 'fscache', '9pnet', '9pnet_virtio', '9p', 'overlay', 'virtio_blk'];
const META_PACKAGE = 'linux-image-amd64';

/** The cache: BURROW_VM_CACHE, else /var/cache/burrow-vm for root, else a per-user dir in /tmp. */
export function cacheDir() {
  if (process.env.BURROW_VM_CACHE) return process.env.BURROW_VM_CACHE;
  return process.getuid() === 0 ? '/var/cache/burrow-vm' : path.join(os.tmpdir(), `burrow-vm-${process.getuid()}`);
}

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26, ...opts });
}

function have(cmd) {
  try {
    sh('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
}

/** The versioned kernel package linux-image-amd64 depends on, e.g. linux-image-6.1.0-56-amd64. */
function kernelPackage() {
  const parse = () => {
    try {
      const out = sh('apt-cache', ['depends', META_PACKAGE]);
      return out.match(/Depends:\s*(linux-image-[0-9][^\s]*-amd64)\b/)?.[1] ?? null;
    } catch {
      return null;
    }
  };
  let pkg = parse();
  if (!pkg && process.getuid() === 0) {
    // A machine whose package lists were never fetched (.ci/setup runs apt-get update too).
    sh('apt-get', ['update', '-q']);
    pkg = parse();
  }
  if (!pkg) throw new Error(`cannot find the kernel package: \`apt-cache depends ${META_PACKAGE}\` names no linux-image-*-amd64 (run apt-get update)`);
  return pkg;
}

/**
 * The unpacked kernel: { package, version, vmlinuz, modules, kept } (modules: its
 * /lib/modules/VERSION, holding only the `kept` modules). Downloaded with `apt-get download` and
 * unpacked with `dpkg -x` on first use, then reused without asking apt again.
 */
export function ensureKernel(cache = cacheDir()) {
  const record = path.join(cache, 'kernel.json');
  if (fs.existsSync(record)) {
    const k = JSON.parse(fs.readFileSync(record, 'utf8'));
    if (fs.existsSync(k.vmlinuz) && fs.existsSync(k.modules) && MODULES.every((m) => k.kept?.includes(m))) return k;
  }
  fs.mkdirSync(cache, { recursive: true });
  const pkg = kernelPackage();
  const work = fs.mkdtempSync(path.join(cache, 'tmp-kernel-'));
  try {
    // apt-get download writes into the working directory; as root apt warns that its sandbox
    // user cannot write there, which is harmless.
    sh('apt-get', ['download', '-q', pkg], { cwd: work });
    const deb = fs.readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${pkg} produced no .deb`);
    const tree = path.join(work, 'tree');
    sh('dpkg', ['-x', path.join(work, deb), tree]);
    fs.rmSync(path.join(work, deb));
    const vm = fs.readdirSync(path.join(tree, 'boot')).find((f) => f.startsWith('vmlinuz-'));
    if (!vm) throw new Error(`${pkg} has no /boot/vmlinuz-*`);
    const version = vm.slice('vmlinuz-'.length);
    // Keep only what the VM uses (the kernel and a dozen modules, not 400 MB of them).
    const keep = path.join(work, 'keep');
    const from = path.join(tree, 'lib', 'modules', version);
    const to = path.join(keep, 'lib', 'modules', version);
    fs.mkdirSync(path.join(keep, 'boot'), { recursive: true });
    fs.mkdirSync(to, { recursive: true });
    fs.copyFileSync(path.join(tree, 'boot', vm), path.join(keep, 'boot', vm));
    if (fs.existsSync(path.join(from, 'modules.builtin'))) fs.copyFileSync(path.join(from, 'modules.builtin'), path.join(to, 'modules.builtin'));
    for (const m of MODULES) {
      const f = findModule(from, m);
      if (!f) continue; // built in, or missing: ensureInitramfs tells which
      fs.mkdirSync(path.join(to, path.dirname(path.relative(from, f))), { recursive: true });
      fs.copyFileSync(f, path.join(to, path.relative(from, f)));
    }
    const dest = path.join(cache, pkg);
    fs.rmSync(dest, { recursive: true, force: true });
    fs.renameSync(keep, dest);
    const k = { package: pkg, version, vmlinuz: path.join(dest, 'boot', vm), modules: path.join(dest, 'lib', 'modules', version), kept: MODULES };
    fs.writeFileSync(`${record}.tmp`, JSON.stringify(k, null, 2));
    fs.renameSync(`${record}.tmp`, record);
    return k;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function findModule(modules, name) {
  const want = new Set([`${name}.ko`, `${name}.ko.xz`, `${name}.ko.zst`, `${name}.ko.gz`].flatMap((n) => [n, n.replaceAll('_', '-')]));
  const stack = [path.join(modules, 'kernel')];
  while (stack.length) {
    const d = stack.pop();
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) stack.push(path.join(d, e.name));
      else if (want.has(e.name)) return path.join(d, e.name);
    }
  }
  return null;
}

function moduleBytes(file) {
  if (file.endsWith('.xz')) return execFileSync('xz', ['-dc', file], { maxBuffer: 1 << 28 });
  if (file.endsWith('.zst')) return execFileSync('zstd', ['-dc', file], { maxBuffer: 1 << 28 });
  if (file.endsWith('.gz')) return execFileSync('gzip', ['-dc', file], { maxBuffer: 1 << 28 });
  return fs.readFileSync(file);
}

/**
 * A cpio "newc" archive (the initramfs format) from entries. Written here rather than with
 * cpio(1) so that the image can hold /dev/console, which an unprivileged mknod could not make.
 */
export function cpioNewc(entries) {
  const chunks = [];
  const pad4 = (n) => Buffer.alloc((4 - (n % 4)) % 4);
  let ino = 1;
  const add = (name, mode, data = Buffer.alloc(0), rdev = [0, 0]) => {
    const nameBuf = Buffer.from(`${name}\0`);
    const fields = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, rdev[0], rdev[1], nameBuf.length, 0];
    const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`);
    chunks.push(header, nameBuf, pad4(header.length + nameBuf.length), data, pad4(data.length));
  };
  for (const e of entries) {
    if (e.type === 'dir') add(e.name, 0o040755);
    else if (e.type === 'file') add(e.name, 0o100000 | (e.mode ?? 0o644), e.data);
    else if (e.type === 'symlink') add(e.name, 0o120777, Buffer.from(e.target));
    else if (e.type === 'chr') add(e.name, 0o020000 | (e.mode ?? 0o600), undefined, e.rdev);
  }
  add('TRAILER!!!', 0);
  return Buffer.concat(chunks);
}

/** Builds (or reuses) the initramfs for `kernel`; its name carries a hash of everything in it. */
export function ensureInitramfs(kernel, cache = cacheDir()) {
  const init = fs.readFileSync(INIT);
  const mods = [];
  const builtin = fs.existsSync(path.join(kernel.modules, 'modules.builtin')) ? fs.readFileSync(path.join(kernel.modules, 'modules.builtin'), 'utf8') : '';
  for (const m of MODULES) {
    const f = findModule(kernel.modules, m);
    if (f) mods.push({ name: m, file: f });
    else if (!new RegExp(`/${m.replace(/[-_]/g, '[-_]')}\\.ko$`, 'm').test(builtin)) throw new Error(`kernel ${kernel.version} has no module ${m}`);
  }
  const hash = crypto.createHash('sha256');
  hash.update(init).update(kernel.version).update(fs.readFileSync(BUSYBOX));
  for (const m of mods) hash.update(m.name).update(path.relative(kernel.modules, m.file));
  const out = path.join(cache, `initramfs-${kernel.version}-${hash.digest('hex').slice(0, 16)}.cpio`);
  if (fs.existsSync(out)) return out;
  const entries = ['dev', 'proc', 'sys', 'bin', 'mnt', 'newroot', 'lib', 'lib/modules'].map((name) => ({ type: 'dir', name }));
  entries.push({ type: 'chr', name: 'dev/console', rdev: [5, 1] });
  entries.push({ type: 'file', name: 'bin/busybox', mode: 0o755, data: fs.readFileSync(BUSYBOX) });
  entries.push({ type: 'symlink', name: 'bin/sh', target: 'busybox' });
  entries.push({ type: 'file', name: 'init', mode: 0o755, data: init });
  for (const m of mods) entries.push({ type: 'file', name: `lib/modules/${m.name}.ko`, data: moduleBytes(m.file) });
  entries.push({ type: 'file', name: 'lib/modules/order', data: Buffer.from(mods.map((m) => `${m.name}\n`).join('')) });
  const tmp = `${out}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, cpioNewc(entries));
  fs.renameSync(tmp, out);
  // Earlier builds (another init script or kernel) are not used again.
  for (const f of fs.readdirSync(cache)) if (/^initramfs-.*\.cpio$/.test(f) && path.join(cache, f) !== out) fs.rmSync(path.join(cache, f), { force: true });
  return out;
}

/** Kernel and initramfs, prepared or reused. */
export function prepare(cache = cacheDir()) {
  if (!have(QEMU)) throw new Error(`${QEMU} is not installed: install the Debian package qemu-system-x86 (bash .ci/setup does)`);
  if (!fs.existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing: install busybox-static`);
  const kernel = ensureKernel(cache);
  return { kernel, initramfs: ensureInitramfs(kernel, cache) };
}

/**
 * Boots the VM and runs `script` (sh text) as the test user with `controllers` delegated.
 * Resolves to { status, output, console, results, timedOut, error, seconds }: `status` is the
 * script's exit status (null when it did not finish), `output` its stdout and stderr, `console`
 * the guest's serial console, `results` a map of the files the script left in
 * $BURROW_VM_RESULTS (name → text). Never rejects for a guest failure; `error` says what went wrong.
 */
/** A 64 MiB sparse file in the job's share. */
function scratchDisk(share) {
  const f = path.join(share, 'scratch.img');
  fs.closeSync(fs.openSync(f, 'w'));
  fs.truncateSync(f, 64 << 20);
  return f;
}

export async function runVm({ script, rootScript = null, controllers = ALL_CONTROLLERS, systemd = false, timeoutMs = 180_000, cpus = 2, memoryMiB = 1024, user = 'burrowtest', keep = false } = {}) {
  const started = Date.now();
  const { kernel, initramfs } = prepare();
  const share = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-vm-job-'));
  try {
    fs.chmodSync(share, 0o755);
    const q = (s) => `'${String(s).replaceAll("'", `'\\''`)}'`;
    fs.writeFileSync(path.join(share, 'job.env'), `VM_USER=${q(user)}\nVM_CONTROLLERS=${q(controllers.join(' '))}\nVM_SYSTEMD=${systemd ? 1 : 0}\n`);
    fs.writeFileSync(path.join(share, 'script.sh'), script, { mode: 0o644 });
    // Checks that need root in the guest (guest-init.sh runs it before the user's job).
    if (rootScript) fs.writeFileSync(path.join(share, 'root-script.sh'), rootScript, { mode: 0o644 });
    const append = [
      'console=ttyS0',
      'panic=-1', // with -no-reboot: a guest that panics ends at once
      'quiet',
      'mitigations=off', // TCG is slow enough
      'cgroup_no_v1=all', // a pure v2 layout, whatever the guest mounts
      'rdinit=/init',
      `burrow.stage2=${STAGE2}`,
    ].join(' ');
    const args = [
      '-accel', 'tcg',
      '-cpu', 'max',
      '-smp', String(cpus),
      '-m', String(memoryMiB),
      '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      '-serial', `file:${path.join(share, 'console.log')}`,
      '-kernel', kernel.vmlinuz,
      '-initrd', initramfs,
      '-append', append,
      '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
      '-virtfs', `local,path=${share},mount_tag=vmshare,security_model=none,multidevs=remap`,
      // A sparse scratch disk: /dev/vda in the guest, for the io.max checks.
      '-drive', `file=${scratchDisk(share)},if=virtio,format=raw,cache=unsafe`,
    ];
    let timedOut = false;
    let qemuErr = '';
    const exit = await new Promise((resolve) => {
      const child = spawn(QEMU, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      // Whatever happens to this process, the VM it started goes with it.
      const killVm = () => {
        if (child.pid && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
      };
      process.on('exit', killVm);
      child.stderr.on('data', (d) => {
        qemuErr += d;
      });
      const timer = setTimeout(() => {
        timedOut = true;
        killVm();
      }, timeoutMs);
      const done = (r) => {
        clearTimeout(timer);
        process.off('exit', killVm);
        resolve(r);
      };
      child.on('error', (e) => done({ code: null, error: e }));
      child.on('exit', (code, signal) => done({ code, signal }));
    });
    const read = (f) => (fs.existsSync(path.join(share, f)) ? fs.readFileSync(path.join(share, f), 'utf8') : '');
    const statusText = read('status').trim();
    const results = {};
    const rdir = path.join(share, 'results');
    if (fs.existsSync(rdir)) for (const f of fs.readdirSync(rdir)) if (fs.statSync(path.join(rdir, f)).isFile()) results[f] = fs.readFileSync(path.join(rdir, f), 'utf8');
    const status = statusText === '' ? null : Number(statusText);
    let error = null;
    if (timedOut) error = `the VM did not finish within ${timeoutMs / 1000} s`;
    else if (exit.error) error = `cannot run ${QEMU}: ${exit.error.message}`;
    else if (read('setup-error')) error = `guest ${read('setup-error').trim()}`;
    else if (status === null) error = `the VM ended without a result (qemu exit ${exit.code ?? exit.signal}${qemuErr ? `: ${qemuErr.trim()}` : ''})`;
    return { status, output: read('output.log'), console: read('console.log'), results, timedOut, error, seconds: (Date.now() - started) / 1000, share: keep ? share : null };
  } finally {
    if (!keep) fs.rmSync(share, { recursive: true, force: true });
  }
}

async function main(argv) {
  let controllers = ALL_CONTROLLERS;
  let systemd = false;
  let timeout = 180;
  let script = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--controllers') controllers = argv[++i].split(/[\s,]+/).filter(Boolean);
    else if (a === '--systemd') systemd = true;
    else if (a === '--timeout') timeout = Number(argv[++i]);
    else if (a === '--script') script = fs.readFileSync(argv[++i], 'utf8');
    else if (a === '--prepare') {
      const p = prepare();
      process.stdout.write(`${JSON.stringify(p, null, 2)}\n`);
      return 0;
    } else if (a === '--') {
      script = `${argv.slice(i + 1).join(' ')}\n`;
      break;
    } else throw new Error(`unknown argument ${a}`);
  }
  if (script === null) throw new Error('usage: run-vm.mjs [--controllers "memory pids"] [--systemd] [--timeout S] (--script FILE | -- COMMAND...)');
  const r = await runVm({ script, controllers, systemd, timeoutMs: timeout * 1000 });
  process.stdout.write(r.output);
  if (r.error) {
    process.stderr.write(`run-vm: ${r.error}\n--- guest console ---\n${r.console}\n`);
  }
  process.stderr.write(`run-vm: ${r.seconds.toFixed(1)} s, status ${r.status}\n`);
  return r.timedOut ? 124 : r.status ?? 125;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`run-vm: ${e.message}\n`);
      process.exit(125);
    },
  );
}
