/**
 * A small tar reader and writer for image archives (`burrow save`/`load`): ustar headers, pax
 * extended headers (long names, sizes) and GNU long names on reading; ustar with pax for long
 * names on writing. Layers themselves are never extracted here — that is the unpacker's job in
 * Rust; here an archive's entries are only regular files (blobs, JSON) and symlinks between them.
 *
 * Safe by construction: entries are streamed to the caller, which stores them under names of its
 * own choosing; no name from an archive is ever used as a path.
 */
import type { Readable, Writable } from 'node:stream';
import { once } from 'node:events';
import * as fs from 'node:fs';
import { BurrowError } from '../errors';

export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';

export interface TarEntry {
  /** The name normalised: no leading `./`, no trailing `/`. */
  name: string;
  type: TarEntryType;
  size: number;
  linkname: string;
}

const BLOCK = 512;

function field(h: Buffer, off: number, len: number): string {
  const s = h.subarray(off, off + len);
  const z = s.indexOf(0);
  return (z === -1 ? s : s.subarray(0, z)).toString('utf8');
}

function octal(h: Buffer, off: number, len: number): number {
  // GNU base-256 for large values: the first byte has its high bit set.
  if (h[off]! & 0x80) {
    let v = 0;
    for (let i = off + 1; i < off + len; i++) v = v * 256 + h[i]!;
    return v;
  }
  const s = field(h, off, len).trim();
  return s ? parseInt(s, 8) : 0;
}

function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return sum === octal(h, 148, 8);
}

function parsePax(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length) {
    const sp = body.indexOf(0x20, i);
    if (sp === -1) break;
    const len = parseInt(body.subarray(i, sp).toString('ascii'), 10);
    if (!(len > 0)) break;
    const rec = body.subarray(sp + 1, i + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    i += len;
  }
  return out;
}

/** What the first bytes of an archive say it is: a plain tar, or a tar in gzip, zstd, bzip2 or xz. */
export type ArchiveKind = 'tar' | 'gzip' | 'zstd' | 'bzip2' | 'xz';

/** The kind of archive `head` (its first 512 bytes, or all of it) starts, or undefined for anything else. */
export function archiveKind(head: Buffer): ArchiveKind | undefined {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32BE(0) === 0x28b52ffd) return 'zstd';
  if (head.length >= 3 && head.subarray(0, 3).toString() === 'BZh') return 'bzip2';
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  return head.length >= 262 && head.subarray(257, 262).toString() === 'ustar' ? 'tar' : undefined;
}

/** The first 512 bytes of a file (fewer when it is shorter), for archiveKind. */
export function fileHead(file: string): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(BLOCK);
    return b.subarray(0, fs.readSync(fd, b, 0, BLOCK, 0));
  } finally {
    fs.closeSync(fd);
  }
}

export function normaliseName(name: string): string {
  return name.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
}

/**
 * Reads a tar stream; for each entry calls `onEntry` with the entry and a Readable of its
 * content (to be consumed before the promise it returns resolves). Pax and GNU long-name
 * records are applied to the next entry and not reported.
 */
export async function readTar(input: AsyncIterable<Buffer>, onEntry: (e: TarEntry, content: AsyncIterable<Buffer>) => Promise<void>, what = 'archive'): Promise<void> {
  const it = input[Symbol.asyncIterator]();
  let buf: Buffer = Buffer.alloc(0);
  let ended = false;
  const need = async (n: number): Promise<boolean> => {
    while (buf.length < n && !ended) {
      const r = await it.next();
      if (r.done) ended = true;
      else buf = buf.length ? Buffer.concat([buf, r.value]) : r.value;
    }
    return buf.length >= n;
  };
  const take = (n: number): Buffer => {
    const out = buf.subarray(0, n);
    buf = buf.subarray(n);
    return out;
  };
  const corrupt = (why: string): BurrowError => new BurrowError('EUSAGE', `${what} is not a valid tar archive: ${why}`);
  /**
   * The content of one entry: `left` bytes, then padding. The iterator handed out survives a
   * `break` in the caller's loop (which calls return()), so that the rest can still be skipped.
   */
  const body = (size: number): { iter: AsyncIterator<Buffer>; skip: () => Promise<void> } => {
    let left = size;
    let padded = false;
    const next = async (): Promise<IteratorResult<Buffer>> => {
      if (left > 0) {
        if (!buf.length && !(await need(1))) throw corrupt('it ends in the middle of an entry');
        const n = Math.min(left, buf.length);
        left -= n;
        return { done: false, value: Buffer.from(take(n)) };
      }
      if (!padded) {
        padded = true;
        const pad = (BLOCK - (size % BLOCK)) % BLOCK;
        if (pad && !(await need(pad))) throw corrupt('it ends in the middle of an entry');
        take(pad);
      }
      return { done: true, value: undefined };
    };
    const skip = async (): Promise<void> => {
      while (!(await next()).done) {
        /* discard */
      }
    };
    return { iter: { next, return: () => Promise.resolve({ done: true as const, value: undefined }) }, skip };
  };
  const readAll = async (size: number): Promise<Buffer> => {
    if (size > 16 * 1024 * 1024) throw corrupt('an extended header is too large');
    const parts: Buffer[] = [];
    const { iter } = body(size);
    for (let r = await iter.next(); !r.done; r = await iter.next()) parts.push(r.value);
    return Buffer.concat(parts);
  };
  let pax: Record<string, string> = {};
  let longName: string | undefined;
  let longLink: string | undefined;
  for (;;) {
    if (!(await need(BLOCK))) {
      if (buf.length === 0) return; // no end-of-archive blocks: tolerated, as GNU tar does
      throw corrupt('it ends in the middle of a header');
    }
    const h = take(BLOCK);
    if (h.every((b) => b === 0)) return;
    if (!checksumOk(h)) throw corrupt('a header checksum is wrong');
    const flag = String.fromCharCode(h[156]!);
    let size = octal(h, 124, 12);
    if (flag === 'x' || flag === 'g') {
      const rec = parsePax(await readAll(size));
      if (flag === 'x') pax = { ...pax, ...rec };
      continue;
    }
    if (flag === 'L' || flag === 'K') {
      const s = (await readAll(size)).toString('utf8').replace(/\0.*$/s, '');
      if (flag === 'L') longName = s;
      else longLink = s;
      continue;
    }
    const magic = field(h, 257, 6);
    const prefix = magic.startsWith('ustar') ? field(h, 345, 155) : '';
    let name = longName ?? pax.path ?? (prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
    const linkname = longLink ?? pax.linkpath ?? field(h, 157, 100);
    if (pax.size !== undefined) size = Number(pax.size);
    pax = {};
    longName = undefined;
    longLink = undefined;
    const type: TarEntryType = flag === '0' || flag === '\0' || flag === '7' ? 'file' : flag === '5' ? 'dir' : flag === '2' ? 'symlink' : flag === '1' ? 'hardlink' : 'other';
    // Only regular files carry content (a hard link's size field is ignored, as tar does).
    const contentSize = type === 'file' || type === 'other' ? size : 0;
    name = normaliseName(name);
    const content = body(contentSize);
    await onEntry({ name, type, size: contentSize, linkname }, { [Symbol.asyncIterator]: () => content.iter });
    // Whatever the callee left unread.
    await content.skip();
  }
}

/** Writes a tar stream: regular files and directories, owner 0:0, mtime 0 (so that saving the same images twice gives the same bytes). */
/**
 * One ustar header block: owner 0:0, `mtime` in seconds (0: the epoch, for reproducible archives).
 * `name` must fit its 100 bytes; longer names are the caller's pax header.
 */
export function ustarHeader(name: string, size: number, type: '0' | '5' | 'x', mode: number, mtime = 0): Buffer {
  const h = Buffer.alloc(BLOCK, 0);
  const put = (off: number, len: number, s: string): void => void Buffer.from(s, 'utf8').copy(h, off, 0, len);
  const oct = (off: number, len: number, n: number): void => put(off, len, n.toString(8).padStart(len - 1, '0') + '\0');
  put(0, 100, name);
  oct(100, 8, mode);
  oct(108, 8, 0);
  oct(116, 8, 0);
  oct(124, 12, size);
  oct(136, 12, mtime);
  h.fill(0x20, 148, 156);
  put(156, 1, type);
  put(257, 6, 'ustar\0');
  put(263, 2, '00');
  let sum = 0;
  for (const b of h) sum += b;
  put(148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return h;
}

export class TarWriter {
  private failed: Error | undefined;

  constructor(private readonly out: Writable) {
    // A write error (disk full, a closed pipe) fails the next write instead of crashing.
    out.on('error', (err: Error) => (this.failed ??= err));
  }

  /** A method, not an inline test: the 'error' listener can set `failed` during a write or an await. */
  private throwIfFailed(): void {
    if (this.failed) throw this.failed;
  }

  private async write(b: Buffer): Promise<void> {
    this.throwIfFailed();
    // `once` rejects when the stream emits 'error' while we wait.
    if (!this.out.write(b)) await once(this.out, 'drain');
    this.throwIfFailed();
  }

  private async head(name: string, size: number, type: '0' | '5', mode: number): Promise<void> {
    if (Buffer.byteLength(name) > 100) {
      const rec = (k: string, v: string): string => {
        const body = ` ${k}=${v}\n`;
        let len = Buffer.byteLength(body) + 1;
        while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
        return `${len}${body}`;
      };
      const pax = Buffer.from(rec('path', name));
      await this.write(ustarHeader('PaxHeader', pax.length, 'x', 0o644));
      await this.write(pax);
      await this.pad(pax.length);
    }
    await this.write(ustarHeader(Buffer.from(name).subarray(0, 100).toString('utf8'), size, type, mode));
  }

  private async pad(n: number): Promise<void> {
    const p = (BLOCK - (n % BLOCK)) % BLOCK;
    if (p) await this.write(Buffer.alloc(p, 0));
  }

  async dir(name: string): Promise<void> {
    await this.head(`${name.replace(/\/+$/, '')}/`, 0, '5', 0o755);
  }

  async file(name: string, content: Buffer): Promise<void> {
    await this.head(name, content.length, '0', 0o644);
    await this.write(content);
    await this.pad(content.length);
  }

  /** A file of `size` bytes from a stream; fails if the stream does not have exactly that many. */
  async stream(name: string, size: number, content: Readable | AsyncIterable<Buffer>): Promise<void> {
    await this.head(name, size, '0', 0o644);
    let n = 0;
    for await (const chunk of content) {
      const b = chunk as Buffer;
      n += b.length;
      if (n > size) throw new BurrowError('EINTERNAL', `${name}: more than the ${size} bytes announced`);
      await this.write(b);
    }
    if (n !== size) throw new BurrowError('EINTERNAL', `${name}: ${n} bytes instead of the ${size} announced`);
    await this.pad(size);
  }

  async end(): Promise<void> {
    await this.write(Buffer.alloc(BLOCK * 2, 0));
    await new Promise<void>((resolve, reject) => {
      if (this.failed) return reject(this.failed);
      this.out.once('error', reject);
      this.out.end(() => (this.failed ? reject(this.failed) : resolve()));
    });
  }
}
