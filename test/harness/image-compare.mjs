// Compares two images as a user of them sees them: the file tree after all layers are applied
// (whiteouts and opaque directories honoured, hard links resolved) and the config fields
// `docker inspect` shows. For the equivalence tests of `burrow build` against `podman build`
// (issue 15): both images are saved (burrow save / podman save, docker-archive or oci-archive),
// or given as OCI layouts or rootfs tars, and every difference is listed so that a test can
// assert that only the deliberate ones (named in the test, with the reason) remain.
//
//   readImage(source)          source: a path (OCI layout directory, oci-archive, docker-archive,
//                              or a plain rootfs tar), or {layout, tag}, {archive}, {rootfsTar}
//                              → {tree: Map<path, entry>, config (the image config JSON) | null}
//   compareImages(a, b, opts)  → [{path | field, what, a, b}], differences only
//   formatDifferences(diffs)   → one line per difference, for an assertion message
//
// An entry: {type: 'file'|'dir'|'symlink'|'char'|'block'|'fifo', mode (permission bits with
// setuid/setgid/sticky), uid, gid, size, sha256 (files), linkname (symlinks), rdev, mtime,
// links (the file's other names when it is hard-linked, so a link copied as a second file shows)}.
// Directories that no layer lists but that exist as parents are {type: 'dir', implicit: true}.
//
// Options of compareImages:
//   ignorePaths: [string | RegExp]   a string ignores that path and everything under it
//   ignoreFields: ['Labels.io.buildah.version', 'History', ...] config fields to skip
//   compareMtime: false               layer timestamps differ between builders by nature
//   configFields: the Config fields compared (CONFIG_FIELDS by default)
//
// `node test/harness/image-compare.mjs A B` prints the differences (exit 1 when there are any).
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

/** The image config's `config` fields that Docker's inspect shows and a Dockerfile sets. */
export const CONFIG_FIELDS = ['Env', 'Cmd', 'Entrypoint', 'WorkingDir', 'User', 'ExposedPorts', 'Volumes', 'Labels', 'StopSignal', 'Healthcheck', 'Shell', 'OnBuild', 'ArgsEscaped'];
/** Top-level image config fields compared too. */
export const IMAGE_FIELDS = ['architecture', 'os', 'variant'];

const TYPES = { 0: 'file', '\0': 'file', 7: 'file', 1: 'hardlink', 2: 'symlink', 3: 'char', 4: 'block', 5: 'dir', 6: 'fifo' };

// ---- tar ------------------------------------------------------------------------------------

function cstr(buf, off, len) {
  const b = buf.subarray(off, off + len);
  const z = b.indexOf(0);
  return (z < 0 ? b : b.subarray(0, z)).toString('utf8');
}

function num(buf, off, len) {
  // GNU base-256 for large values: high bit of the first byte set.
  if (buf[off] & 0x80) {
    let v = BigInt(buf[off] & 0x7f);
    for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(buf[off + i]);
    return Number(v);
  }
  const s = cstr(buf, off, len).trim();
  return s === '' ? 0 : parseInt(s, 8);
}

function parsePax(data) {
  const out = {};
  let p = 0;
  while (p < data.length) {
    const sp = data.indexOf(0x20, p);
    if (sp < 0) break;
    const len = parseInt(data.subarray(p, sp).toString('ascii'), 10);
    if (!len) break;
    const rec = data.subarray(sp + 1, p + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    p += len;
  }
  return out;
}

/** The entries of a tar (ustar, pax, GNU long names), with their data. */
export function* tarEntries(buf) {
  let off = 0;
  let pax = {};
  let globalPax = {};
  let longName;
  let longLink;
  while (off + 512 <= buf.length) {
    const h = buf.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const typeflag = String.fromCharCode(h[156] || 0x30);
    let size = num(h, 124, 12);
    const magic = cstr(h, 257, 6);
    const dataOff = off + 512;
    const paxSize = pax.size ?? globalPax.size;
    if (paxSize !== undefined && !'xgLK'.includes(typeflag)) size = Number(paxSize);
    const data = buf.subarray(dataOff, dataOff + size);
    off = dataOff + Math.ceil(size / 512) * 512;
    if (typeflag === 'x') {
      pax = parsePax(data);
      continue;
    }
    if (typeflag === 'g') {
      globalPax = { ...globalPax, ...parsePax(data) };
      continue;
    }
    if (typeflag === 'L') {
      longName = cstr(data, 0, data.length);
      continue;
    }
    if (typeflag === 'K') {
      longLink = cstr(data, 0, data.length);
      continue;
    }
    const prefix = magic.startsWith('ustar') ? cstr(h, 345, 155) : '';
    const name = pax.path ?? longName ?? (prefix ? `${prefix}/${cstr(h, 0, 100)}` : cstr(h, 0, 100));
    const linkname = pax.linkpath ?? longLink ?? cstr(h, 157, 100);
    yield {
      name,
      type: TYPES[typeflag] ?? `type ${typeflag}`,
      mode: num(h, 100, 8) & 0o7777,
      uid: Number(pax.uid ?? num(h, 108, 8)),
      gid: Number(pax.gid ?? num(h, 116, 8)),
      size,
      mtime: Number(pax.mtime ?? num(h, 136, 12)),
      linkname,
      rdev: typeflag === '3' || typeflag === '4' ? `${num(h, 329, 8)}:${num(h, 337, 8)}` : undefined,
      data,
    };
    pax = {};
    longName = undefined;
    longLink = undefined;
  }
}

function decompress(buf) {
  if (buf[0] === 0x1f && buf[1] === 0x8b) return zlib.gunzipSync(buf);
  if (buf.readUInt32LE(0) === 0xfd2fb528) return execFileSync('zstd', ['-dc'], { input: buf, maxBuffer: 2 ** 31 });
  return buf;
}

function clean(name) {
  let p = path.posix.normalize('/' + name).replace(/\/+$/, '');
  if (p === '') p = '/';
  return p;
}

let inodes = 0;

/** Marks each file that has other names (hard links) with them: `links`, sorted, comma-joined. */
function linkGroups(tree) {
  const byIno = new Map();
  for (const [p, e] of tree) {
    if (e.ino === undefined || e.type !== 'file') continue;
    const g = byIno.get(e.ino) ?? [];
    g.push(p);
    byIno.set(e.ino, g);
  }
  for (const g of byIno.values()) {
    if (g.length < 2) continue;
    for (const p of g) tree.set(p, { ...tree.get(p), links: g.filter((x) => x !== p).sort().join(',') });
  }
  return tree;
}

/**
 * Applies one layer to a tree (Map of absolute path → entry): whiteouts first, against the
 * layers below (as the OCI image spec says), then the layer's own entries in order.
 */
export function applyLayer(tree, tarBuf) {
  const entries = [...tarEntries(decompress(tarBuf))];
  const removeUnder = (dir, andSelf) => {
    const pre = dir === '/' ? '/' : dir + '/';
    for (const k of [...tree.keys()]) if (k.startsWith(pre) || (andSelf && k === dir)) tree.delete(k);
  };
  for (const e of entries) {
    const p = clean(e.name);
    const base = path.posix.basename(p);
    if (!base.startsWith('.wh.')) continue;
    const dir = path.posix.dirname(p);
    if (base === '.wh..wh..opq') removeUnder(dir, false);
    else removeUnder(path.posix.join(dir, base.slice(4)), true);
  }
  for (const e of entries) {
    const p = clean(e.name);
    if (path.posix.basename(p).startsWith('.wh.')) continue;
    if (p === '/') continue;
    // Parents that the layer does not list exist all the same.
    for (let d = path.posix.dirname(p); d !== '/' && !tree.has(d); d = path.posix.dirname(d)) tree.set(d, { type: 'dir', implicit: true });
    const old = tree.get(p);
    // A directory over a directory keeps what is in it; anything else replaces the whole path.
    if (old && !(old.type === 'dir' && e.type === 'dir')) removeUnder(p, false);
    let entry;
    if (e.type === 'hardlink') {
      // The same inode under another name: same content, owner, mode and inode number.
      const target = tree.get(clean(e.linkname));
      entry = target ? { ...target } : { type: 'hardlink', linkname: clean(e.linkname), missing: true };
    } else {
      entry = { type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, ino: ++inodes };
      if (e.type === 'file') {
        entry.size = e.size;
        entry.sha256 = crypto.createHash('sha256').update(e.data).digest('hex');
      }
      if (e.type === 'symlink') entry.linkname = e.linkname;
      if (e.rdev) entry.rdev = e.rdev;
    }
    tree.set(p, entry);
  }
  return tree;
}

// ---- images ---------------------------------------------------------------------------------

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

function blob(layout, digest) {
  return path.join(layout, 'blobs', ...digest.split(':'));
}

function hostArch() {
  return { x64: 'amd64', arm64: 'arm64' }[process.arch] ?? process.arch;
}

/** The manifest of an OCI layout: by tag (ref.name) when given, else the only one. */
function ociManifest(layout, tag) {
  let index = readJson(path.join(layout, 'index.json'));
  let list = index.manifests ?? [];
  if (tag !== undefined) {
    list = list.filter((m) => {
      const n = m.annotations?.['org.opencontainers.image.ref.name'];
      return n === tag || n?.endsWith(`:${tag}`) || m.annotations?.['io.containerd.image.name'] === tag;
    });
  }
  if (list.length !== 1) throw new Error(`${layout}: ${list.length} manifests${tag ? ` tagged ${tag}` : ''}; name one (have ${JSON.stringify((index.manifests ?? []).map((m) => m.annotations ?? m.digest))})`);
  let desc = list[0];
  // An index (multi-platform): the host's platform.
  while (desc.mediaType?.includes('index') || desc.mediaType?.includes('manifest.list')) {
    index = readJson(blob(layout, desc.digest));
    desc = index.manifests.find((m) => m.platform?.architecture === hostArch()) ?? index.manifests[0];
  }
  return readJson(blob(layout, desc.digest));
}

function withExtracted(archive, fn) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-compare-'));
  try {
    execFileSync('tar', ['-xf', archive, '-C', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
    return fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function fromDir(dir, tag) {
  if (fs.existsSync(path.join(dir, 'manifest.json'))) {
    // docker-archive: [{Config, RepoTags, Layers}]
    const list = readJson(path.join(dir, 'manifest.json'));
    const m = tag === undefined ? list[0] : list.find((x) => (x.RepoTags ?? []).some((t) => t === tag || t.endsWith(`:${tag}`)));
    if (!m) throw new Error(`${dir}: no image ${tag ?? ''} in manifest.json`);
    const config = readJson(path.join(dir, m.Config));
    const tree = new Map();
    for (const l of m.Layers) applyLayer(tree, fs.readFileSync(path.join(dir, l)));
    return { tree: linkGroups(tree), config };
  }
  if (fs.existsSync(path.join(dir, 'oci-layout'))) {
    const manifest = ociManifest(dir, tag);
    const config = readJson(blob(dir, manifest.config.digest));
    const tree = new Map();
    for (const l of manifest.layers) applyLayer(tree, fs.readFileSync(blob(dir, l.digest)));
    return { tree: linkGroups(tree), config };
  }
  throw new Error(`${dir} is neither an OCI layout nor a docker-archive`);
}

/** Whether a tar file is an image archive (index.json or manifest.json at its top). */
function isImageArchive(file) {
  const names = execFileSync('tar', ['-tf', file], { encoding: 'utf8', maxBuffer: 1 << 28 }).split('\n');
  return names.some((n) => ['index.json', './index.json', 'manifest.json', './manifest.json'].includes(n));
}

export function readImage(source) {
  if (typeof source === 'string') {
    if (fs.statSync(source).isDirectory()) return fromDir(source);
    if (isImageArchive(source)) return withExtracted(source, (d) => fromDir(d));
    return readImage({ rootfsTar: source });
  }
  if (source.layout) return fromDir(source.layout, source.tag);
  if (source.archive) return withExtracted(source.archive, (d) => fromDir(d, source.tag));
  if (source.rootfsTar) return { tree: linkGroups(applyLayer(new Map(), fs.readFileSync(source.rootfsTar))), config: null };
  if (source.tree) return { tree: source.tree, config: source.config ?? null };
  throw new Error(`readImage: cannot read ${JSON.stringify(source)}`);
}

// ---- comparison -----------------------------------------------------------------------------

function ignored(p, ignorePaths) {
  return ignorePaths.some((i) => (i instanceof RegExp ? i.test(p) : p === i || p.startsWith(i.endsWith('/') ? i : i + '/')));
}

const ENTRY_FIELDS = ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'linkname', 'rdev', 'links'];

function canonical(v) {
  if (v === null || v === undefined) return undefined;
  if (Array.isArray(v)) return v.length === 0 ? undefined : v;
  if (typeof v === 'object') {
    const keys = Object.keys(v).sort();
    if (keys.length === 0) return undefined;
    return Object.fromEntries(keys.map((k) => [k, v[k]]));
  }
  return v;
}

const same = (a, b) => JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));

export function compareImages(a, b, { ignorePaths = [], ignoreFields = [], compareMtime = false, configFields = CONFIG_FIELDS } = {}) {
  const A = a.tree ? a : readImage(a);
  const B = b.tree ? b : readImage(b);
  const diffs = [];
  const paths = new Set([...A.tree.keys(), ...B.tree.keys()]);
  for (const p of [...paths].sort()) {
    if (ignored(p, ignorePaths)) continue;
    const x = A.tree.get(p);
    const y = B.tree.get(p);
    if (!x || !y) {
      diffs.push({ path: p, what: 'exists', a: x ? describe(x) : 'missing', b: y ? describe(y) : 'missing' });
      continue;
    }
    const fields = compareMtime ? [...ENTRY_FIELDS, 'mtime'] : ENTRY_FIELDS;
    // A directory no layer lists has no known mode or owner: only its existence is compared.
    const skipMeta = x.implicit || y.implicit;
    for (const f of fields) {
      if (skipMeta && f !== 'type') continue;
      if (x[f] !== y[f]) diffs.push({ path: p, what: f, a: show(f, x[f]), b: show(f, y[f]) });
    }
  }
  if (A.config && B.config) {
    const skip = new Set(ignoreFields);
    for (const f of IMAGE_FIELDS) if (!skip.has(f) && !same(A.config[f], B.config[f])) diffs.push({ field: f, what: 'config', a: A.config[f], b: B.config[f] });
    const ca = A.config.config ?? {};
    const cb = B.config.config ?? {};
    for (const f of configFields) {
      if (skip.has(f)) continue;
      if (f === 'Labels' || f === 'Env') {
        // Per key, so that one deliberate extra label (io.buildah.version) can be ignored alone.
        const ma = f === 'Env' ? envMap(ca.Env) : ca.Labels ?? {};
        const mb = f === 'Env' ? envMap(cb.Env) : cb.Labels ?? {};
        for (const k of [...new Set([...Object.keys(ma), ...Object.keys(mb)])].sort()) {
          if (skip.has(`${f}.${k}`)) continue;
          if (ma[k] !== mb[k]) diffs.push({ field: `${f}.${k}`, what: 'config', a: ma[k], b: mb[k] });
        }
        if (f === 'Env' && !skip.has('Env.order') && same(envMap(ca.Env), envMap(cb.Env)) && !same(ca.Env, cb.Env)) diffs.push({ field: 'Env', what: 'order', a: ca.Env, b: cb.Env });
        continue;
      }
      if (!same(ca[f], cb[f])) diffs.push({ field: f, what: 'config', a: ca[f], b: cb[f] });
    }
    if (!skip.has('History')) {
      const ha = (A.config.history ?? []).length;
      const hb = (B.config.history ?? []).length;
      if (ha !== hb) diffs.push({ field: 'history', what: 'length', a: ha, b: hb });
    }
  }
  return diffs;
}

function envMap(env) {
  const m = {};
  for (const e of env ?? []) {
    const i = e.indexOf('=');
    m[i < 0 ? e : e.slice(0, i)] = i < 0 ? '' : e.slice(i + 1);
  }
  return m;
}

function show(field, v) {
  return field === 'mode' && typeof v === 'number' ? '0' + v.toString(8) : v;
}

function describe(e) {
  if (e.implicit) return 'dir (implicit)';
  const bits = [e.type, show('mode', e.mode), `${e.uid}:${e.gid}`];
  if (e.type === 'file') bits.push(`${e.size}B`);
  if (e.type === 'symlink') bits.push(`-> ${e.linkname}`);
  return bits.join(' ');
}

export function formatDifferences(diffs) {
  return diffs.map((d) => `${d.path ?? d.field}: ${d.what}: ${JSON.stringify(d.a)} != ${JSON.stringify(d.b)}`).join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [a, b] = process.argv.slice(2);
  if (!a || !b) {
    process.stderr.write('usage: node test/harness/image-compare.mjs IMAGE_A IMAGE_B (OCI layout dirs, oci/docker archives, rootfs tars)\n');
    process.exit(2);
  }
  const diffs = compareImages(readImage(a), readImage(b));
  process.stdout.write(diffs.length ? formatDifferences(diffs) + '\n' : 'no differences\n');
  process.exit(diffs.length ? 1 : 0);
}
