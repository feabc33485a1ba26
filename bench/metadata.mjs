// File-metadata system calls of one container, attributed to the file system they reach
// (bench/squash.bench.mjs, docs/hpc-images.md "Metadata traffic").
//
// `strace -f -y` prints every call with its path argument and its descriptors' paths; each call
// is attributed by the path it names (a relative one against its directory descriptor or the
// caller's working directory, `/proc/self/fd/N` through the caller's descriptor N) and by who
// makes it:
//   image      the image's storage on the measured file system: the store's layers, blobs, image
//              records and tags, or the directory holding the one-file image and the file;
//   container  everything else on that file system: the container's directory in the store (its
//              writable layer, bundle, records), the store's own records and directories;
//   host       everything elsewhere: the host's /usr and /etc, /proc, /dev, the run directory;
//   inside     the container's own processes (after pivot_root), and calls that go through the
//              container's FUSE mounts (squashfuse's mount, the union): answered by the FUSE
//              daemons, whose own calls against the file system are counted where they land.
//              Files the runtime binds from the container's directory (/etc/hosts, /etc/hostname,
//              /etc/resolv.conf) count as `container` from inside too.
//
// Why `--seccomp-bpf`: without it strace stops the FUSE daemons at every system call, their read
// of /dev/fuse included. When strace then reads a path argument of a container process from a
// page of a file served by that daemon (a string in a program's .rodata, not yet read), its
// read waits for the daemon and the daemon for strace: both hang. With seccomp-bpf the daemons
// stop only at the traced (metadata) calls, which they make while serving a request of a process
// that is itself waiting, not while strace reads its memory. It sets no_new_privs, which keeps the
// setuid newuidmap from working: the traced run is root's.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** The metadata system calls counted: every call naming a path, the stat family, directory reads, xattrs. */
export const METADATA = '%file,%stat,%lstat,%fstat,getdents64,getxattr,lgetxattr,fgetxattr,listxattr,llistxattr,flistxattr';
/** Traced to follow processes and namespaces; not counted. */
const HELPERS = ['clone', 'clone3', 'fork', 'vfork', 'unshare', 'setns'];
/** What the runtime binds into the container from the container's directory. */
const BOUND = new Set(['/etc/hosts', '/etc/hostname', '/etc/resolv.conf']);

const under = (p, dir) => p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);

/** A C string as strace prints it (`"a\"b"`), unescaped; `undefined` if `s` does not start with one. */
function cString(s) {
  const m = /^"((?:[^"\\]|\\.)*)"/.exec(s);
  if (!m) return undefined;
  const text = m[1].replace(/\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)/g, (_, e) => {
    if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]/.test(e)) return String.fromCharCode(parseInt(e, 8));
    return { n: '\n', t: '\t', r: '\r', v: '\v', f: '\f' }[e] ?? e;
  });
  return { text, rest: s.slice(m[0].length) };
}

/** The first arguments of a call: descriptors with their paths (`3</a/b>`, `AT_FDCWD</cwd>`), strings, or other. */
function args(s, n) {
  const out = [];
  let rest = s;
  for (let i = 0; i < n && rest.length; i++) {
    const fd = /^(AT_FDCWD|-?\d+)(?:<((?:[^>\\]|\\.)*)>(?:\(deleted\))?)?/.exec(rest);
    const str = cString(rest);
    if (str) {
      out.push({ str: str.text });
      rest = str.rest;
    } else if (fd && /^(,|\)|$|\s)/.test(rest.slice(fd[0].length))) {
      out.push({ fd: fd[1], path: fd[2] });
      rest = rest.slice(fd[0].length);
    } else {
      out.push({});
      // Skip to the next top-level comma (structures and arrays may hold commas).
      let depth = 0;
      let j = 0;
      for (; j < rest.length; j++) {
        const c = rest[j];
        if (c === '"') {
          const q = cString(rest.slice(j));
          if (q) j += rest.slice(j).length - q.rest.length - 1;
        } else if ('{[('.includes(c)) depth++;
        else if ('}])'.includes(c)) {
          if (depth === 0) break;
          depth--;
        } else if (c === ',' && depth === 0) break;
      }
      rest = rest.slice(j);
    }
    const sep = /^(\.\.\.)?,\s*/.exec(rest);
    if (!sep) break;
    rest = rest.slice(sep[0].length);
  }
  return out;
}

/**
 * Counts per category of a `strace -f -y --pidns-translation` log (see the header).
 * `fsRoot`: where the measured file system is mounted; `imageRoots`: the image's storage on it.
 */
export function attribute(log, { fsRoot, imageRoots }, explain) {
  const counts = { image: 0, container: 0, host: 0, inside: 0 };
  /** Per pid: its descriptors (shared by threads) and working directory. */
  const fds = new Map();
  const cwd = new Map();
  const nsTree = new Set(); // the container's mount namespace: the pid that unshared it and its descendants
  const inside = new Set(); // the container's own processes: after pivot_root, and their children
  const fuseMounts = []; // mount points of FUSE or overlay file systems made in the container's namespace
  const pendingClone = new Map();
  const table = (pid) => {
    if (!fds.has(pid)) fds.set(pid, new Map());
    return fds.get(pid);
  };
  const learn = (pid, text) => {
    for (const m of text.matchAll(/(?<![\w.])(\d+)<((?:[^>\\]|\\.)*)>/g)) table(pid).set(m[1], m[2]);
    const c = /AT_FDCWD<((?:[^>\\]|\\.)*)>/.exec(text);
    if (c) cwd.set(pid, c[1]);
  };
  const child = (pid, flags, ret) => {
    // In the container's pid namespace the call returns its own number for the child; strace
    // adds the one it prints lines with.
    const kid = /\/\* (\d+) in strace's PID NS \*\//.exec(ret)?.[1] ?? /^\s*(\d+)/.exec(ret)?.[1];
    if (!kid) return;
    fds.set(kid, flags.includes('CLONE_FILES') ? table(pid) : new Map(table(pid)));
    if (cwd.has(pid)) cwd.set(kid, cwd.get(pid));
    if (nsTree.has(pid) || flags.includes('CLONE_NEWNS')) nsTree.add(kid);
    if (inside.has(pid)) inside.add(kid);
  };
  const resolve = (pid, p, base) => {
    if (p === undefined) return undefined;
    let abs = path.posix.isAbsolute(p) ? p : base !== undefined && path.posix.isAbsolute(base) ? path.posix.join(base, p) : cwd.has(pid) ? path.posix.join(cwd.get(pid), p) : undefined;
    if (abs === undefined) return undefined;
    abs = path.posix.normalize(abs);
    const self = /^\/proc\/(?:self|thread-self)\/fd\/(\d+)(\/.*)?$/.exec(abs);
    if (self && table(pid).has(self[1])) abs = path.posix.normalize(table(pid).get(self[1]) + (self[2] ?? ''));
    return abs.length > 1 ? abs.replace(/\/$/, '') : abs;
  };
  let line = 0;
  for (const raw of log.split('\n')) {
    line++;
    const m = /^(\d+)\s+(.*)$/.exec(raw);
    if (!m) continue;
    const [, pid, body] = m;
    const resumed = /^<\.\.\. (\w+) resumed>(.*)$/.exec(body);
    if (resumed) {
      learn(pid, resumed[2]);
      if (pendingClone.has(pid) && HELPERS.includes(resumed[1])) {
        const ret = /\)\s*=\s*(.*)$/.exec(resumed[2]);
        if (ret) child(pid, pendingClone.get(pid), ret[1]);
        pendingClone.delete(pid);
      }
      continue;
    }
    const call = /^(\w+)\((.*)$/.exec(body);
    if (!call) continue; // signals, exits
    const [, name, rest] = call;
    learn(pid, rest);
    if (HELPERS.includes(name)) {
      if (name === 'unshare' && rest.includes('CLONE_NEWNS')) nsTree.add(pid);
      if (name !== 'unshare' && name !== 'setns') {
        const ret = /\)\s*=\s*(.*)$/.exec(rest);
        if (ret) child(pid, rest, ret[1]);
        else pendingClone.set(pid, rest);
      }
      continue;
    }
    // The path the call names.
    const a = args(rest, 3);
    let p;
    if (name === 'mount') p = resolve(pid, a[1]?.str);
    else if (name === 'symlink') p = resolve(pid, a[1]?.str);
    else if (name === 'symlinkat') p = resolve(pid, a[2]?.str, a[1]?.fd === 'AT_FDCWD' ? cwd.get(pid) : a[1]?.path);
    else if (/^f(get|set|remove)xattr$/.test(name)) p = resolve(pid, a[0]?.path);
    else if (a[0]?.fd !== undefined && a[1]?.str !== undefined) p = a[1].str === '' ? resolve(pid, a[0].path) : resolve(pid, a[1].str, a[0].fd === 'AT_FDCWD' ? cwd.get(pid) : a[0].path);
    else if (a[0]?.fd !== undefined) p = resolve(pid, a[0].path);
    else if (a[0]?.str !== undefined) p = resolve(pid, a[0].str);
    else if (a[1]?.str !== undefined) p = resolve(pid, a[1].str);
    let cat;
    if (inside.has(pid)) cat = p !== undefined && BOUND.has(p) ? 'container' : 'inside';
    else if (p !== undefined && nsTree.has(pid) && fuseMounts.some((mp) => mp.line < line && under(p, mp.dir))) cat = 'inside';
    else if (p !== undefined && imageRoots.some((r) => under(p, r))) cat = 'image';
    else if (p !== undefined && under(p, fsRoot)) cat = 'container';
    else cat = 'host';
    counts[cat]++;
    explain?.(cat, p, raw);
    if (name === 'chdir' && p !== undefined && /\)\s*=\s*0/.test(rest)) cwd.set(pid, p);
    if (name === 'fchdir' && a[0]?.path) cwd.set(pid, a[0].path);
    if (name === 'mount' && nsTree.has(pid) && p !== undefined && /^"(fuse|overlay)/.test(rest.split(', ')[2] ?? '')) fuseMounts.push({ dir: p, line });
    if (name === 'pivot_root' && /\)\s*=\s*0/.test(rest)) inside.add(pid);
  }
  return { ...counts, total: counts.image + counts.container + counts.host + counts.inside };
}

/**
 * `argv` under `strace -f -y` (as the caller: root), its metadata calls attributed (attribute()).
 * The run is ended after `timeoutMs`: should strace and a FUSE daemon ever wait for each other
 * (see the header), the bench reports it rather than hanging.
 */
export function straceAttributed(argv, out, opts, timeoutMs = 180_000) {
  const r = spawnSync('strace', ['-f', '-y', '--seccomp-bpf', '--pidns-translation', '-o', out, '-e', `trace=${METADATA},${HELPERS.join(',')}`, ...argv], { encoding: 'utf8', maxBuffer: 1 << 28, timeout: timeoutMs, killSignal: 'SIGKILL' });
  if (r.error) return { status: r.error.code ?? String(r.error), image: NaN, container: NaN, host: NaN, inside: NaN, total: NaN };
  return { status: r.status, ...attribute(fs.readFileSync(out, 'utf8'), opts) };
}
