/**
 * Registry credentials: where they are looked up, in order, and how `burrow login`/`logout`
 * store them. burrow's own files come first, then the files podman/skopeo and Docker use, so
 * a user who already logged in with either tool is logged in here too:
 *
 *   $XDG_RUNTIME_DIR/burrow/auth.json, ~/.config/burrow/auth.json      (burrow; written by login)
 *   $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
 *   ~/.config/containers/auth.json                                      (podman, skopeo, buildah)
 *   $DOCKER_CONFIG/config.json or ~/.docker/config.json                 (Docker, with credsStore
 *                                                                        and credHelpers)
 *
 * All use containers-auth.json's shape: {"auths": {"HOST": {"auth": base64("user:pass")}}}.
 * A key may carry a scheme or a path (`https://index.docker.io/v1/`, `quay.io/org`); a key with
 * a repository path is more specific than the bare host and wins for that repository.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { DOCKER_HUB } from './reference';

export interface Credentials {
  username: string;
  password: string;
  /** An OAuth2 refresh token (Docker's `identitytoken`); used instead of the password by token servers. */
  identityToken?: string;
  /** Where they came from (a file path, or `docker-credential-NAME`), for messages. */
  source: string;
}

/** The environment auth looks at; tests pass their own instead of changing process.env. */
export interface AuthEnv {
  env?: NodeJS.ProcessEnv;
  home?: string;
  /** How long a credential helper may take (ms). */
  helperTimeoutMs?: number;
}

/** The docker.io keys Docker and podman write, all meaning the same registry. */
const HUB_ALIASES = ['docker.io', 'index.docker.io', 'registry-1.docker.io', 'https://index.docker.io/v1/'];
/** What Docker's credential helpers are asked for docker.io. */
const HUB_HELPER_URL = 'https://index.docker.io/v1/';

function envOf(a: AuthEnv): { env: NodeJS.ProcessEnv; home: string } {
  const env = a.env ?? process.env;
  return { env, home: a.home ?? env.HOME ?? os.homedir() };
}

/** burrow's own auth files, in lookup order. */
export function burrowAuthFiles(a: AuthEnv = {}): string[] {
  const { env, home } = envOf(a);
  const files: string[] = [];
  if (env.XDG_RUNTIME_DIR) files.push(path.join(env.XDG_RUNTIME_DIR, 'burrow', 'auth.json'));
  files.push(path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'burrow', 'auth.json'));
  return files;
}

/** The file `burrow login` writes: the persistent one, so a login survives the session (and Slurm jobs, which have no XDG_RUNTIME_DIR). */
export function defaultAuthFile(a: AuthEnv = {}): string {
  const files = burrowAuthFiles(a);
  return files[files.length - 1] as string;
}

interface AuthSource {
  file: string;
  docker: boolean;
}

/** Every file looked at, in order. */
export function authFiles(a: AuthEnv = {}): AuthSource[] {
  const { env, home } = envOf(a);
  const out: AuthSource[] = burrowAuthFiles(a).map((file) => ({ file, docker: false }));
  if (env.REGISTRY_AUTH_FILE) out.push({ file: env.REGISTRY_AUTH_FILE, docker: false });
  if (env.XDG_RUNTIME_DIR) out.push({ file: path.join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'), docker: false });
  out.push({ file: path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'containers', 'auth.json'), docker: false });
  out.push({ file: path.join(env.DOCKER_CONFIG || path.join(home, '.docker'), 'config.json'), docker: true });
  return out;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

interface AuthFile {
  auths: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers: Record<string, string>;
  /** Everything else in the file, kept when we rewrite it. */
  raw: Record<string, unknown>;
}

function fileError(file: string, why: string, cause?: unknown): BurrowError {
  return new BurrowError('EAUTH_FILE', `cannot use the credentials file ${file}: ${why}`, `fix or remove ${file}`, { cause });
}

/** Reads an auth file; undefined when it does not exist. */
function readAuthFile(file: string): AuthFile | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw fileError(file, (err as Error).message, err);
  }
  if (text.trim() === '') return { auths: {}, credHelpers: {}, raw: {} };
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (err) {
    throw fileError(file, `not valid JSON (${(err as Error).message})`, err);
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw fileError(file, 'not a JSON object');
  const raw = j as Record<string, unknown>;
  const auths: Record<string, AuthEntry> = {};
  if (raw.auths !== undefined && raw.auths !== null) {
    if (typeof raw.auths !== 'object' || Array.isArray(raw.auths)) throw fileError(file, '"auths" is not an object');
    for (const [k, v] of Object.entries(raw.auths as Record<string, unknown>)) {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw fileError(file, `the entry for ${k} is not an object`);
      const e: AuthEntry = {};
      for (const f of ['auth', 'username', 'password', 'identitytoken'] as const) {
        const x = (v as Record<string, unknown>)[f];
        if (typeof x === 'string' && x !== '') e[f] = x;
      }
      auths[k] = e;
    }
  }
  const credHelpers: Record<string, string> = {};
  if (typeof raw.credHelpers === 'object' && raw.credHelpers !== null) {
    for (const [k, v] of Object.entries(raw.credHelpers as Record<string, unknown>)) if (typeof v === 'string' && v) credHelpers[k] = v;
  }
  const out: AuthFile = { auths, credHelpers, raw };
  if (typeof raw.credsStore === 'string' && raw.credsStore) out.credsStore = raw.credsStore;
  return out;
}

/** `https://host/v1/` → `host`, `host/ns/repo` stays; lower-cased host part. */
export function normalizeAuthKey(key: string): string {
  let k = key.trim().replace(/^[a-z]+:\/\//i, '');
  k = k.replace(/\/+$/, '').replace(/\/v[12]$/, '');
  const slash = k.indexOf('/');
  const host = slash === -1 ? k : k.slice(0, slash);
  const rest = slash === -1 ? '' : k.slice(slash);
  const h = host.toLowerCase();
  return (HUB_ALIASES.includes(h) ? DOCKER_HUB : h) + rest;
}

function normalizeHost(host: string): string {
  return normalizeAuthKey(host);
}

/**
 * The keys to try for `host` (and `repository` in it), most specific first: `host/ns/repo`,
 * `host/ns`, `host` — the rule of containers-auth.json.
 */
function candidateKeys(host: string, repository?: string): string[] {
  const h = normalizeHost(host);
  const keys: string[] = [];
  if (repository) {
    const parts = repository.split('/');
    for (let n = parts.length; n > 0; n--) keys.push(`${h}/${parts.slice(0, n).join('/')}`);
  }
  keys.push(h);
  return keys;
}

function findEntry(f: AuthFile, keys: string[]): AuthEntry | undefined {
  const byKey = new Map<string, AuthEntry>();
  for (const [k, v] of Object.entries(f.auths)) {
    const n = normalizeAuthKey(k);
    if (!byKey.has(n)) byKey.set(n, v);
  }
  for (const k of keys) {
    const e = byKey.get(k);
    if (e) return e;
  }
  return undefined;
}

function decodeEntry(e: AuthEntry, source: string): Credentials | undefined {
  let username = e.username ?? '';
  let password = e.password ?? '';
  if (e.auth) {
    const decoded = Buffer.from(e.auth, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i === -1) throw fileError(source, 'an "auth" value is not base64("user:password")');
    username = decoded.slice(0, i);
    password = decoded.slice(i + 1);
  }
  if (!username && !e.identitytoken) return undefined;
  const c: Credentials = { username, password, source };
  if (e.identitytoken) c.identityToken = e.identitytoken;
  return c;
}

/** Runs `docker-credential-NAME get` as Docker does: the server URL on stdin, JSON on stdout. */
export function runCredentialHelper(helper: string, serverUrl: string, a: AuthEnv = {}): Promise<Credentials | undefined> {
  const bin = `docker-credential-${helper}`;
  const { env } = envOf(a);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const child = spawn(bin, ['get'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), a.helperTimeoutMs ?? 30_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdin.on('error', () => undefined); // a helper that exits before reading
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(
        new BurrowError('ECREDENTIAL_HELPER', `cannot run the credential helper ${bin}: ${e.message}`, `install ${bin}, or remove "${helper}" from your Docker config`, { cause: e }),
      );
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      // Helpers say "credentials not found in native keychain" (on stdout or stderr) and exit 1.
      if (code !== 0) {
        if (/credentials not found/i.test(out + err)) return resolve(undefined);
        return reject(new BurrowError('ECREDENTIAL_HELPER', `${bin} get failed (${signal ?? `exit ${code}`}): ${(err || out).trim()}`));
      }
      let j: unknown;
      try {
        j = JSON.parse(out);
      } catch {
        return reject(new BurrowError('ECREDENTIAL_HELPER', `${bin} get printed something that is not JSON`));
      }
      const o = j as Record<string, unknown>;
      if (typeof j !== 'object' || j === null || typeof o.Username !== 'string' || typeof o.Secret !== 'string') {
        return reject(new BurrowError('ECREDENTIAL_HELPER', `${bin} get did not print {"Username", "Secret"}`));
      }
      if (o.Secret === '') return resolve(undefined);
      // Docker's convention: the user "<token>" means the secret is an identity token.
      if (o.Username === '<token>') return resolve({ username: '', password: '', identityToken: o.Secret, source: bin });
      resolve({ username: o.Username, password: o.Secret, source: bin });
    });
    child.stdin.end(serverUrl);
  });
}

/**
 * The credentials for a registry host (as named in the image reference, e.g. `docker.io`,
 * `localhost:5000`), or undefined for anonymous access.
 */
export async function getCredentials(host: string, repository?: string, a: AuthEnv = {}): Promise<Credentials | undefined> {
  const keys = candidateKeys(host, repository);
  const hostKey = normalizeHost(host);
  for (const src of authFiles(a)) {
    const f = readAuthFile(src.file);
    if (!f) continue;
    if (src.docker) {
      // Docker: a per-registry helper, then the global store, then the file itself.
      const helperFor = Object.entries(f.credHelpers).find(([k]) => normalizeAuthKey(k) === hostKey)?.[1];
      const helper = helperFor ?? f.credsStore;
      if (helper) {
        const c = await runCredentialHelper(helper, hostKey === DOCKER_HUB ? HUB_HELPER_URL : host, a);
        if (c) return c;
        if (helperFor) continue;
      }
    }
    const e = findEntry(f, keys);
    if (e) {
      const c = decodeEntry(e, src.file);
      if (c) return c;
    }
  }
  return undefined;
}

/** Writes a file atomically: a private temporary file in the same directory, fsync, rename. */
function writeFileAtomic(file: string, data: string): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

function serialize(f: AuthFile): string {
  return JSON.stringify({ ...f.raw, auths: f.auths }, null, '\t') + '\n';
}

/** Removes every key meaning `key` from a file's auths; whether it removed any. */
function dropKey(f: AuthFile, key: string): boolean {
  let removed = false;
  for (const k of Object.keys(f.auths)) {
    if (normalizeAuthKey(k) === key) {
      delete f.auths[k];
      removed = true;
    }
  }
  return removed;
}

/**
 * Stores credentials for `host` (or `host/namespace`) in `file` (default: ~/.config/burrow/auth.json),
 * mode 0600 in a 0700 directory. Returns the file written. Without an explicit file, an entry
 * for the host in $XDG_RUNTIME_DIR/burrow/auth.json, which is looked up first, is removed so the
 * new login is the one used.
 */
export function login(host: string, username: string, password: string, file?: string, a: AuthEnv = {}): string {
  if (username.includes(':')) throw new BurrowError('EUSAGE', 'a registry user name cannot contain ":"');
  const key = normalizeAuthKey(host);
  const target = file ?? defaultAuthFile(a);
  const f = readAuthFile(target) ?? { auths: {}, credHelpers: {}, raw: {} };
  dropKey(f, key);
  f.auths[key] = { auth: Buffer.from(`${username}:${password}`, 'utf8').toString('base64') };
  writeFileAtomic(target, serialize(f));
  if (file === undefined) {
    for (const other of burrowAuthFiles(a)) {
      if (other === target) continue;
      const o = readAuthFile(other);
      if (o && dropKey(o, key)) writeFileAtomic(other, serialize(o));
    }
  }
  return target;
}

export interface LogoutResult {
  /** burrow's files the entry was removed from. */
  removed: string[];
  /** Other tools' files that still hold credentials for the host (burrow leaves them alone). */
  remaining: string[];
}

/** Removes the credentials for `host` from burrow's own files (or from `file` only). */
export function logout(host: string, file?: string, a: AuthEnv = {}): LogoutResult {
  const key = normalizeAuthKey(host);
  const own = file !== undefined ? [file] : burrowAuthFiles(a);
  const removed: string[] = [];
  for (const p of own) {
    const f = readAuthFile(p);
    if (f && dropKey(f, key)) {
      writeFileAtomic(p, serialize(f));
      removed.push(p);
    }
  }
  const remaining: string[] = [];
  for (const src of authFiles(a)) {
    if (own.includes(src.file)) continue;
    let f: AuthFile | undefined;
    try {
      f = readAuthFile(src.file);
    } catch {
      continue;
    }
    if (f && (findEntry(f, [key]) || Object.keys(f.credHelpers).some((k) => normalizeAuthKey(k) === key))) remaining.push(src.file);
  }
  return { removed, remaining };
}
