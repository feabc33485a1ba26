/**
 * `--init`: a small init as the container's pid 1 that reaps orphaned processes, forwards
 * signals to the command and exits with its status, as Docker (tini, `docker-init`) and
 * podman (catatonit, `/run/podman-init`) do. The binary comes from the host and is
 * bind-mounted read-only into the container at INIT_PATH, so it must run in any image: it has
 * to be statically linked. burrow-runtime itself is not (it links glibc and libseccomp), hence
 * Debian's `tini-static` (package tini) or `catatonit`, both static.
 */
import * as fs from 'node:fs';
import { BurrowError } from '../errors';

/** Where the init appears inside the container. */
export const INIT_PATH = '/run/burrow-init';

/** Looked for in this order when neither `--init-path` nor the config names one. */
const CANDIDATES = ['/usr/bin/tini-static', '/usr/bin/catatonit', '/usr/libexec/podman/catatonit', '/usr/bin/docker-init', '/usr/libexec/docker/docker-init', '/sbin/tini-static'];

/** Whether an ELF executable has no program interpreter (PT_INTERP), i.e. runs without ld.so. */
export function isStaticElf(file: string): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(64);
    if (fs.readSync(fd, head, 0, 64, 0) < 52 || head.readUInt32BE(0) !== 0x7f454c46) return false;
    const is64 = head[4] === 2;
    const le = head[5] === 1;
    const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const phoff = is64 ? Number(le ? head.readBigUInt64LE(32) : head.readBigUInt64BE(32)) : u32(head, 28);
    const phentsize = u16(head, is64 ? 54 : 42);
    const phnum = u16(head, is64 ? 56 : 44);
    if (phnum === 0 || phentsize < 4 || phnum > 512) return false;
    const ph = Buffer.alloc(phentsize * phnum);
    if (fs.readSync(fd, ph, 0, ph.length, phoff) < ph.length) return false;
    for (let i = 0; i < phnum; i++) if (u32(ph, i * phentsize) === 3 /* PT_INTERP */) return false;
    return true;
  } finally {
    fs.closeSync(fd);
  }
}

/** The host binary to use as the init: `configured` (flag or config) or the first one found. */
export function findInit(configured?: string): string {
  if (configured) {
    checkInit(configured);
    return configured;
  }
  for (const c of CANDIDATES) {
    try {
      fs.accessSync(c, fs.constants.X_OK);
    } catch {
      continue;
    }
    if (isStaticElf(c)) return c;
  }
  throw new BurrowError('EUSAGE', `--init: no statically linked init found (looked for ${CANDIDATES.join(', ')})`, 'install Debian\'s tini (it ships /usr/bin/tini-static) or catatonit, or name one with --init-path or init_path in the config file');
}

function checkInit(p: string): void {
  try {
    fs.accessSync(p, fs.constants.X_OK);
  } catch (err) {
    throw new BurrowError('EUSAGE', `--init: ${p} cannot be executed (${(err as NodeJS.ErrnoException).code})`);
  }
  if (!fs.statSync(p).isFile() || !isStaticElf(p)) {
    throw new BurrowError('EUSAGE', `--init: ${p} is not a statically linked executable: inside the container it would find neither its loader nor its libraries`, 'use a static init such as /usr/bin/tini-static (Debian package tini) or catatonit');
  }
}
