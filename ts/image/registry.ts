/**
 * A Docker Registry HTTP API v2 / OCI distribution client: manifests (indexes resolved to one
 * platform), blobs streamed to disk with their digest checked on the fly, and the calls a push
 * needs. It owns transport concerns only: TLS (system CAs plus containers-certs.d style CA
 * directories), plain HTTP for insecure registries, authentication (anonymous, Basic, Bearer
 * tokens per scope), mirrors and redirects. Nothing it writes is trusted before it is verified:
 * a blob becomes visible under its final name only when complete, of the right size and digest.
 *
 * One client may serve many concurrent calls (parallel layer downloads): host state, tokens and
 * credentials are shared and their fetches deduplicated.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import * as tls from 'node:tls';
import { configFile } from '../config/config';
import { BurrowError } from '../errors';
import { VERSION } from '../version';
import { getCredentials, type AuthEnv, type Credentials } from './auth';
import {
  ACCEPTED_MANIFEST_TYPES,
  MAX_CONFIG_BYTES,
  MAX_MANIFEST_BYTES,
  parseImageConfig,
  parseManifest,
  selectPlatform,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type Manifest,
  type Platform,
} from './manifest';
import { parseDigest, registryApiHost, type ImageRef } from './reference';

/** A repository in a registry; an ImageRef is one. */
export interface RepoRef {
  /** The registry as named in references (`docker.io`, `localhost:5000`). */
  registry: string;
  repository: string;
}

export type CredentialLookup = (registry: string, repository: string) => Promise<Credentials | undefined>;

export interface RegistryOptions {
  /**
   * Registries (`host` or `host:port`) that may be spoken to over plain HTTP when they do not
   * speak TLS. localhost, 127.0.0.0/8 and ::1 are always in it, as in Docker.
   */
  insecureRegistries?: string[];
  /** false: do not verify TLS certificates at all (`--tls-verify=false`). Default true. */
  tlsVerify?: boolean;
  /**
   * Mirrors per registry, tried in order before it for pulls: `{"docker.io": ["mirror.local:5000"]}`.
   * An entry is `[http(s)://]host[:port][/path-prefix]`; `http://` makes it plain HTTP.
   */
  mirrors?: Record<string, string[]>;
  /**
   * Directories holding one subdirectory per `host[:port]` with CA certificates (`*.crt`) and
   * client certificates (`*.cert` + `*.key`). Default: ~/.config/burrow/certs.d, /etc/containers/certs.d.
   */
  certDirs?: string[];
  /** Where credentials come from; default: ts/image/auth's lookup (with `authEnv`). */
  credentials?: CredentialLookup;
  authEnv?: AuthEnv;
  userAgent?: string;
  /** A connection idle for this long is given up (ms). Default 60 s. */
  timeoutMs?: number;
  /** How many times a blob download is tried (resuming with Range) after a dropped connection. Default 4. */
  blobAttempts?: number;
}

export interface ManifestResult {
  mediaType: string;
  /** The digest of `bytes` (the content address of this manifest). */
  digest: string;
  bytes: Buffer;
  manifest: Manifest;
  /** The index this manifest was selected from, when the reference named an index. */
  index?: { mediaType: string; digest: string; bytes: Buffer; manifest: ImageIndex };
  /** The host that served it: the registry's API host, or a mirror's. */
  source: string;
}

export interface ResolvedManifest extends ManifestResult {
  manifest: ImageManifest;
}

export interface GetManifestOptions {
  /** Platform to select from an index; default: this host. */
  platform?: Platform;
  signal?: AbortSignal;
}

export interface BlobProgress {
  digest: string;
  /** Bytes on disk so far, including any resumed from a previous `.partial`. */
  completed: number;
  total: number;
}

export interface FetchBlobOptions {
  onProgress?: (p: BlobProgress) => void;
  signal?: AbortSignal;
  /** Told where the blob's bytes are written as they arrive (a pull unpacks them meanwhile). */
  tap?: BlobTap;
}

/**
 * Follows a download on disk: each attempt's file and, after every write, how much of it is
 * written (bytes already hashed into the digest that will be checked). The file is the blob's
 * `.partial`, later renamed into place; an attempt that starts at a smaller offset than the last
 * `written` truncated or replaced it. A tap only reads: nothing it sees is verified until
 * fetchBlob resolves.
 */
export interface BlobTap {
  start(file: string, offset: number): void;
  written(bytes: number): void;
}

/** Bytes of a blob download collected before they are written to its file. */
const WRITE_BATCH = 1024 * 1024;

export interface FetchBlobResult {
  path: string;
  digest: string;
  size: number;
  /** Bytes that were already in the `.partial` file and were not downloaded again. */
  resumedFrom: number;
  /** HTTP requests made for the body (1 unless a connection dropped). */
  requests: number;
  source: string;
}

// ---- transport helpers ---------------------------------------------------------------------

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

interface Endpoint {
  /** The registry as named (key for credentials when not a mirror). */
  registry: string;
  /** host[:port] spoken to. */
  host: string;
  /** The repository path at this endpoint (a mirror may add a prefix). */
  repository: string;
  mirror: boolean;
  forceHttp: boolean;
}

interface Response {
  status: number;
  statusMessage: string;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
  url: URL;
}

export type Challenge = { scheme: 'basic'; realm?: string } | { scheme: 'bearer'; realm: string; service?: string; scope: string[] };

interface HostState {
  scheme?: 'https' | 'http';
  /** An insecure host's plain-HTTP probe, while it runs (speaksHttp). */
  probe?: Promise<boolean>;
  challenge?: Challenge;
}

interface Token {
  token: string;
  expiresAt: number;
  /** process.hrtime at the start of the request that got it. */
  obtainedAt: bigint;
}

interface SendOptions {
  method: Method;
  /** Path and query below the host (`/v2/...`), or an absolute URL (an upload location). */
  target: string | URL;
  headers?: Record<string, string>;
  /** A factory, so a request can be sent again after an authentication challenge. */
  body?: () => Readable | Buffer;
  scopes: string[];
  signal?: AbortSignal | undefined;
  /** What is being asked for, for messages: "manifest localhost:5000/x:y". */
  what: string;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;
const ERROR_BODY_LIMIT = 64 * 1024;
const TOKEN_BODY_LIMIT = 1024 * 1024;
const SYSTEM_CA_FILES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/ca-bundle.pem', '/etc/ssl/cert.pem'];

const pullScope = (repo: string): string => `repository:${repo}:pull`;
const pushScope = (repo: string): string => `repository:${repo}:pull,push`;

function isLoopback(host: string): boolean {
  const h = hostOnly(host);
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

/** `host:port` → `host`; `[::1]:5000` → `::1`. */
function hostOnly(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const i = host.lastIndexOf(':');
  return i === -1 ? host : host.slice(0, i);
}

/**
 * Whether `host` answers a plain HTTP request with an HTTP status line (one loopback round trip).
 * A TLS server answers with an alert, a 400, or closes; anything else, including no answer
 * within a second, means no, and the caller tries TLS as before.
 */
export function speaksHttp(host: string, signal: AbortSignal | undefined): Promise<boolean> {
  const h = hostOnly(host);
  const port = Number(host.slice(host.lastIndexOf(':') + 1)) || 80;
  return new Promise((resolve) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const net = require('node:net') as typeof import('node:net');
    const sock = net.connect({ host: h, port });
    let got = '';
    const done = (v: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(false), 1000);
    signal?.addEventListener('abort', () => done(false), { once: true });
    sock.on('connect', () => sock.write(`HEAD /v2/ HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    // Go's TLS servers (Docker's registry among them) answer plain HTTP with "400 Bad Request:
    // Client sent an HTTP request to an HTTPS server"; a registry's /v2/ answers 200 or 401.
    const http = () => /^HTTP\/1\.[01] (?!400)\d{3}/.test(got);
    sock.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n') || !'HTTP/1.x 000'.startsWith(got.slice(0, 5))) done(http());
    });
    sock.on('error', () => done(false));
    sock.on('close', () => done(http()));
  });
}

let systemCas: string[] | undefined;
/** Node's bundled roots plus the distribution's CA bundle (which may add site CAs). */
function systemCaList(): string[] {
  if (systemCas) return systemCas;
  const list = [...tls.rootCertificates];
  const files = process.env.SSL_CERT_FILE ? [process.env.SSL_CERT_FILE] : SYSTEM_CA_FILES;
  for (const f of files) {
    try {
      list.push(fs.readFileSync(f, 'utf8'));
      break;
    } catch {
      /* try the next location */
    }
  }
  systemCas = list;
  return list;
}

/** Reads a whole (small) body; `tooLarge` makes the error for one past `limit` bytes. */
async function readBody(res: http.IncomingMessage, limit: number, what: string, tooLarge?: () => BurrowError): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of res) {
      const b = chunk as Buffer;
      n += b.length;
      if (n > limit) {
        res.destroy();
        throw tooLarge ? tooLarge() : new BurrowError('EREGISTRY', `${what}: the answer is larger than the ${limit} bytes allowed`);
      }
      chunks.push(b);
    }
  } catch (err) {
    if (err instanceof BurrowError) throw err;
    if ((err as Error).name === 'AbortError') throw canceled(what, err);
    throw new BurrowError('EREGISTRY_UNREACHABLE', `${what}: the connection dropped (${(err as Error).message})`, 'check the network and try again', { cause: err });
  }
  return Buffer.concat(chunks);
}

function drain(res: http.IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    res.on('end', resolve).on('error', () => resolve()).on('close', resolve);
    res.resume();
  });
}

/** Parses `WWW-Authenticate` (RFC 7235 auth-params, quoted strings with escapes); Bearer preferred over Basic. */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const challenges: { scheme: string; params: Record<string, string> }[] = [];
  let current: { scheme: string; params: Record<string, string> } | undefined;
  let i = 0;
  const n = header.length;
  const skip = (chars: RegExp): void => {
    while (i < n && chars.test(header[i] as string)) i++;
  };
  while (i < n) {
    skip(/[\s,]/);
    const start = i;
    while (i < n && !/[\s=,]/.test(header[i] as string)) i++;
    const word = header.slice(start, i);
    if (!word) {
      i++;
      continue;
    }
    skip(/\s/);
    if (header[i] !== '=') {
      current = { scheme: word.toLowerCase(), params: {} };
      challenges.push(current);
      continue;
    }
    i++;
    skip(/\s/);
    let value = '';
    if (header[i] === '"') {
      i++;
      while (i < n && header[i] !== '"') {
        if (header[i] === '\\' && i + 1 < n) i++;
        value += header[i];
        i++;
      }
      i++;
    } else {
      const vs = i;
      while (i < n && !/[\s,]/.test(header[i] as string)) i++;
      value = header.slice(vs, i);
    }
    if (current) current.params[word.toLowerCase()] = value;
  }
  const bearer = challenges.find((c) => c.scheme === 'bearer' && c.params.realm);
  if (bearer) {
    const c: Challenge = { scheme: 'bearer', realm: bearer.params.realm as string, scope: bearer.params.scope ? bearer.params.scope.split(' ').filter(Boolean) : [] };
    if (bearer.params.service !== undefined) c.service = bearer.params.service;
    return c;
  }
  const basic = challenges.find((c) => c.scheme === 'basic');
  if (basic) return basic.params.realm !== undefined ? { scheme: 'basic', realm: basic.params.realm } : { scheme: 'basic' };
  return undefined;
}

/** The registry's error JSON ({"errors": [{"code", "message", "detail"}]}) as one line. */
function registryErrorText(body: Buffer): string {
  try {
    const j: unknown = JSON.parse(body.toString('utf8'));
    if (typeof j === 'object' && j !== null && Array.isArray((j as { errors?: unknown }).errors)) {
      const parts: string[] = [];
      for (const e of (j as { errors: unknown[] }).errors) {
        if (typeof e !== 'object' || e === null) continue;
        const o = e as Record<string, unknown>;
        const code = typeof o.code === 'string' ? o.code : '';
        const msg = typeof o.message === 'string' ? o.message : '';
        parts.push([code, msg].filter(Boolean).join(': '));
      }
      if (parts.length) return parts.join('; ');
    }
  } catch {
    /* not JSON */
  }
  const text = body.toString('utf8').trim();
  return /^[\x20-\x7e]{1,200}$/.test(text) ? text : '';
}

const CERT_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ALTNAME|HOSTNAME_MISMATCH/;

function isCertError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? '';
  return CERT_ERROR.test(code);
}

/** How a user marks a registry insecure: the config file's key and the environment variable. */
function insecureFix(host: string): string {
  return `mark it insecure: add "${host}" to \`insecure\` under \`[registries]\` in ${configFile()}, or to BURROW_INSECURE_REGISTRIES (comma-separated), or pass --tls-verify=false`;
}

/** A certificate failure in words, from Node's code rather than OpenSSL's text. */
function certProblem(e: NodeJS.ErrnoException): string {
  switch (e.code) {
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
      return 'it is self-signed, by a CA this host does not trust';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
      return 'it is signed by a CA this host does not trust';
    case 'CERT_HAS_EXPIRED':
      return 'it has expired';
    case 'CERT_NOT_YET_VALID':
      return 'it is not valid yet (check the clock)';
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return 'it is made out to another name';
    default:
      return e.code ? e.code.toLowerCase().replace(/_/g, ' ') : 'it is not trusted';
  }
}

/** A TLS handshake failing because the other side speaks plain HTTP (or not TLS at all). */
function isProtocolError(err: unknown): boolean {
  const e = err as NodeJS.ErrnoException | undefined;
  const code = e?.code ?? '';
  return code === 'EPROTO' || code.startsWith('ERR_SSL_') || /wrong version number|packet length too long|unknown protocol/i.test(e?.message ?? '');
}

function isAbort(err: unknown, signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true || (err as Error | undefined)?.name === 'AbortError';
}

function canceled(what: string, cause?: unknown): BurrowError {
  return new BurrowError('ECANCELED', `${what}: canceled`, undefined, { cause });
}

function digestOf(algorithm: string, data: Buffer): string {
  return `${algorithm}:${crypto.createHash(algorithm).update(data).digest('hex')}`;
}

function digestMismatch(what: string, expected: string, actual: string, source: string): BurrowError {
  return new BurrowError(
    'EDIGEST_MISMATCH',
    `${what} from ${source} failed verification: expected digest ${expected}, got ${actual}`,
    'the registry (or something between it and you) served corrupt or altered data; try again, and report it to the registry operator if it persists',
  );
}

// ---- the client --------------------------------------------------------------------------------

export class RegistryClient {
  private readonly opts: RegistryOptions;
  private readonly insecure: Set<string>;
  private readonly hosts = new Map<string, HostState>();
  private readonly agents = new Map<string, http.Agent>();
  private readonly tokens = new Map<string, Token>();
  private readonly tokenFetches = new Map<string, { startedAt: bigint; promise: Promise<Token> }>();
  private readonly creds = new Map<string, Promise<Credentials | undefined>>();
  private readonly blobFetches = new Map<string, Promise<FetchBlobResult>>();
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });

  constructor(opts: RegistryOptions = {}) {
    this.opts = opts;
    this.insecure = new Set((opts.insecureRegistries ?? []).map((h) => h.toLowerCase()));
  }

  /** Closes idle keep-alive connections (a CLI process exits sooner). */
  close(): void {
    this.httpAgent.destroy();
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }

  // ---- public API: pull ------------------------------------------------------------------------

  /**
   * The image manifest for `ref`: an index is resolved to the manifest for `platform` (default:
   * this host). Every manifest received is checked against the digest asked for (the reference's
   * or the index entry's) or, for a tag, against the registry's Docker-Content-Digest; an index
   * entry's size is checked too.
   */
  async getManifest(ref: ImageRef, opts: GetManifestOptions = {}): Promise<ResolvedManifest> {
    return this.withMirrors(ref, async (ep) => {
      const top = await this.fetchManifest(ep, ref.reference, ref.digest, undefined, undefined, opts.signal);
      if (top.manifest.kind === 'manifest') return { ...top, manifest: top.manifest };
      const entry = selectPlatform(top.manifest, opts.platform);
      const child = await this.fetchManifest(ep, entry.digest, entry.digest, entry.size, entry.mediaType, opts.signal);
      if (child.manifest.kind !== 'manifest') {
        throw new BurrowError('EMANIFEST_UNSUPPORTED', `${ref.familiar()}: an index entry for a platform is itself an index, which burrow does not follow`);
      }
      return { ...child, manifest: child.manifest, index: { mediaType: top.mediaType, digest: top.digest, bytes: top.bytes, manifest: top.manifest } };
    });
  }

  /** The manifest or index `ref` names, as stored (no platform resolution); digest-checked like getManifest. */
  async getRawManifest(ref: ImageRef, opts: { signal?: AbortSignal } = {}): Promise<ManifestResult> {
    return this.withMirrors(ref, (ep) => this.fetchManifest(ep, ref.reference, ref.digest, undefined, undefined, opts.signal));
  }

  /** An image's config, fetched into memory and verified against the manifest's config descriptor. */
  async getConfig(repo: RepoRef, manifest: ImageManifest, opts: { signal?: AbortSignal } = {}): Promise<{ config: ImageConfig; bytes: Buffer }> {
    const bytes = await this.fetchBlobBytes(repo, manifest.config, MAX_CONFIG_BYTES, opts);
    return { config: parseImageConfig(bytes), bytes };
  }

  /** A small blob, in memory, size- and digest-checked. */
  async fetchBlobBytes(repo: RepoRef, desc: Descriptor, limit: number, opts: { signal?: AbortSignal } = {}): Promise<Buffer> {
    const { algorithm } = parseDigest(desc.digest);
    if (desc.size > limit) throw new BurrowError('ESIZE_MISMATCH', `blob ${desc.digest} is ${desc.size} bytes, more than the ${limit} allowed here`);
    return this.withMirrors(repo, async (ep) => {
      const what = `blob ${desc.digest} in ${ep.host}/${ep.repository}`;
      const res = await this.send(ep, { method: 'GET', target: `/v2/${ep.repository}/blobs/${desc.digest}`, scopes: [pullScope(ep.repository)], signal: opts.signal, what });
      if (res.status !== 200) throw await this.statusError(ep, res, what);
      const body = await readBody(res.body, desc.size, what, () => new BurrowError('ESIZE_MISMATCH', `${what}: more than the ${desc.size} bytes its descriptor says`));
      if (body.length !== desc.size) throw new BurrowError('ESIZE_MISMATCH', `${what}: got ${body.length} bytes, its descriptor says ${desc.size}`);
      const actual = digestOf(algorithm, body);
      if (actual !== desc.digest) throw digestMismatch(`blob ${desc.digest}`, desc.digest, actual, `${ep.host}/${ep.repository}`);
      return body;
    });
  }

  /**
   * Downloads a blob to `dest`. Bytes go to `dest + ".partial"` and are hashed as they arrive;
   * only a complete file of the right size and digest is fsynced and renamed to `dest`. An
   * existing `.partial` (a killed or canceled download) is hashed and continued with a Range
   * request; a dropped connection is resumed the same way, up to `blobAttempts` times. On a
   * digest or size mismatch nothing is left behind.
   */
  fetchBlob(repo: RepoRef, desc: Descriptor, dest: string, opts: FetchBlobOptions = {}): Promise<FetchBlobResult> {
    const key = path.resolve(dest);
    const running = this.blobFetches.get(key);
    if (running) return running;
    const p = this.withMirrors(repo, (ep) => this.fetchBlobFrom(ep, desc, key, opts)).finally(() => this.blobFetches.delete(key));
    this.blobFetches.set(key, p);
    return p;
  }

  // ---- public API: push ------------------------------------------------------------------------

  /** Whether the repository has the blob (HEAD). */
  async blobExists(repo: RepoRef, digest: string, opts: { signal?: AbortSignal } = {}): Promise<boolean> {
    parseDigest(digest);
    const ep = this.upstream(repo);
    const what = `blob ${digest} in ${ep.host}/${ep.repository}`;
    const res = await this.send(ep, { method: 'HEAD', target: `/v2/${ep.repository}/blobs/${digest}`, scopes: [pushScope(ep.repository)], signal: opts.signal, what });
    if (res.status !== 200 && res.status !== 404) throw await this.statusError(ep, res, what);
    await drain(res.body);
    return res.status === 200;
  }

  /**
   * Asks the registry to link a blob from another repository it holds (cross-repository mount),
   * so it need not be uploaded. Returns false when the registry would not (the blob is then
   * uploaded as usual).
   */
  async mountBlob(repo: RepoRef, digest: string, fromRepository: string, opts: { signal?: AbortSignal } = {}): Promise<boolean> {
    parseDigest(digest);
    const ep = this.upstream(repo);
    const what = `mount of ${digest} from ${fromRepository} into ${ep.host}/${ep.repository}`;
    const q = new URLSearchParams({ mount: digest, from: fromRepository });
    const res = await this.send(ep, {
      method: 'POST',
      target: `/v2/${ep.repository}/blobs/uploads/?${q.toString()}`,
      headers: { 'content-length': '0' },
      scopes: [pushScope(ep.repository), pullScope(fromRepository)],
      signal: opts.signal,
      what,
    });
    if (res.status !== 201 && res.status !== 202) throw await this.statusError(ep, res, what);
    await drain(res.body);
    if (res.status === 201) return true;
    // The registry started an ordinary upload instead; cancel it rather than leave it open.
    const loc = headerString(res.headers.location);
    if (loc) {
      await this.send(ep, { method: 'DELETE', target: new URL(loc, res.url), scopes: [pushScope(ep.repository)], what })
        .then((r) => drain(r.body))
        .catch(() => undefined);
    }
    return false;
  }

  /** Uploads a blob from a file in one request (POST to open the upload, PUT with the content). */
  async uploadBlob(repo: RepoRef, file: string, desc: Descriptor, opts: { signal?: AbortSignal } = {}): Promise<void> {
    parseDigest(desc.digest);
    const st = await fs.promises.stat(file);
    if (st.size !== desc.size) throw new BurrowError('ESIZE_MISMATCH', `${file} is ${st.size} bytes but its descriptor says ${desc.size}`);
    const ep = this.upstream(repo);
    const what = `upload of ${desc.digest} to ${ep.host}/${ep.repository}`;
    const scopes = [pushScope(ep.repository)];
    const start = await this.send(ep, { method: 'POST', target: `/v2/${ep.repository}/blobs/uploads/`, headers: { 'content-length': '0' }, scopes, signal: opts.signal, what });
    if (start.status !== 202 || !start.headers.location) throw await this.statusError(ep, start, what);
    await drain(start.body);
    const loc = new URL(start.headers.location, start.url);
    loc.searchParams.set('digest', desc.digest);
    const res = await this.send(ep, {
      method: 'PUT',
      target: loc,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
      body: () => fs.createReadStream(file),
      scopes,
      signal: opts.signal,
      what,
    });
    if (res.status !== 201) throw await this.statusError(ep, res, what);
    await drain(res.body);
    const got = res.headers['docker-content-digest'];
    if (typeof got === 'string' && got !== desc.digest) throw digestMismatch(`uploaded blob ${desc.digest}`, desc.digest, got, ep.host);
  }

  /** Stores a manifest under the reference's tag (or digest). Returns its digest. */
  async putManifest(ref: ImageRef, bytes: Buffer, mediaType: string, opts: { signal?: AbortSignal } = {}): Promise<string> {
    parseManifest(bytes, mediaType);
    const algorithm = ref.digest ? parseDigest(ref.digest).algorithm : 'sha256';
    const digest = digestOf(algorithm, bytes);
    if (ref.digest && ref.digest !== digest) throw digestMismatch('manifest to push', ref.digest, digest, 'local content');
    const ep = this.upstream(ref);
    const what = `manifest ${ep.host}/${ep.repository}:${ref.tag ?? digest}`;
    const res = await this.send(ep, {
      method: 'PUT',
      target: `/v2/${ep.repository}/manifests/${ref.tag ?? digest}`,
      headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
      body: () => bytes,
      scopes: [pushScope(ep.repository)],
      signal: opts.signal,
      what,
    });
    if (res.status !== 201) throw await this.statusError(ep, res, what);
    await drain(res.body);
    const got = res.headers['docker-content-digest'];
    if (typeof got === 'string' && got.startsWith(`${algorithm}:`) && got !== digest) throw digestMismatch('pushed manifest', digest, got, ep.host);
    return digest;
  }

  /**
   * Checks credentials against a registry the way `docker login` does: `/v2/`, then (for a
   * token registry) a token request without scope. Throws EREGISTRY_AUTH when they are refused.
   */
  async checkLogin(registry: string, creds: { username: string; password: string }, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const ep: Endpoint = { registry, host: registryApiHost(registry), repository: '', mirror: false, forceHttp: false };
    const res = await this.transport(ep, 'GET', '/v2/', { 'user-agent': this.userAgent() }, undefined, opts.signal);
    if (res.status !== 200 && res.status !== 401) throw await this.statusError(ep, res, `login to ${registry}`);
    await drain(res.body);
    if (res.status === 200) return;
    const ch = parseChallenge(headerString(res.headers['www-authenticate']));
    const full: Credentials = { ...creds, source: 'the login command' };
    if (ch?.scheme === 'bearer') {
      await this.requestToken(ep, ch, [], full, opts.signal);
      return;
    }
    const again = await this.transport(ep, 'GET', '/v2/', { 'user-agent': this.userAgent(), authorization: basic(full) }, undefined, opts.signal);
    if (again.status === 200 || again.status === 401 || again.status === 403) await drain(again.body);
    else throw await this.statusError(ep, again, `login to ${registry}`);
    if (again.status !== 200) {
      throw new BurrowError('EREGISTRY_AUTH', `${registry} rejected the user name or password`, `check them and run: burrow login ${registry}`);
    }
  }

  // ---- manifests ---------------------------------------------------------------------------------

  private async fetchManifest(
    ep: Endpoint,
    reference: string,
    expectedDigest: string | undefined,
    expectedSize: number | undefined,
    expectedType: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<ManifestResult> {
    const sep = reference.includes(':') ? '@' : ':';
    const what = `manifest ${ep.host}/${ep.repository}${sep}${reference}`;
    const res = await this.send(ep, {
      method: 'GET',
      target: `/v2/${ep.repository}/manifests/${reference}`,
      headers: { accept: ACCEPTED_MANIFEST_TYPES.join(', ') },
      scopes: [pullScope(ep.repository)],
      signal,
      what,
    });
    if (res.status !== 200) throw await this.statusError(ep, res, what);
    const limit = Math.min(expectedSize ?? MAX_MANIFEST_BYTES, MAX_MANIFEST_BYTES);
    const bytes = await readBody(res.body, limit, what, () =>
      expectedSize !== undefined && expectedSize <= MAX_MANIFEST_BYTES
        ? new BurrowError('ESIZE_MISMATCH', `${what}: larger than the ${expectedSize} bytes its descriptor says`)
        : new BurrowError('EMANIFEST_INVALID', `${what}: larger than the ${MAX_MANIFEST_BYTES} bytes a manifest may have`),
    );
    if (expectedSize !== undefined && bytes.length !== expectedSize) {
      throw new BurrowError('ESIZE_MISMATCH', `${what}: got ${bytes.length} bytes, its descriptor says ${expectedSize}`);
    }
    const header = headerString(res.headers['docker-content-digest']);
    let digest: string;
    if (expectedDigest !== undefined) {
      const actual = digestOf(parseDigest(expectedDigest).algorithm, bytes);
      if (actual !== expectedDigest) throw digestMismatch(what, expectedDigest, actual, ep.host);
      digest = expectedDigest;
    } else if (header !== undefined) {
      let algorithm: string;
      try {
        algorithm = parseDigest(header).algorithm;
      } catch {
        throw new BurrowError('EREGISTRY', `${what}: the registry sent an invalid Docker-Content-Digest header: ${header}`);
      }
      const actual = digestOf(algorithm, bytes);
      if (actual !== header) throw digestMismatch(what, header, actual, ep.host);
      digest = header;
    } else {
      // Nothing to check against (the header is optional for OCI registries): TLS is the trust.
      digest = digestOf('sha256', bytes);
    }
    const manifest = parseManifest(bytes, headerString(res.headers['content-type']));
    if (expectedType !== undefined && expectedType !== manifest.mediaType) {
      throw new BurrowError('EMANIFEST_INVALID', `${what}: the index says ${expectedType} but the manifest is ${manifest.mediaType}`);
    }
    return { mediaType: manifest.mediaType, digest, bytes, manifest, source: ep.host };
  }

  // ---- blobs -------------------------------------------------------------------------------------

  private async fetchBlobFrom(ep: Endpoint, desc: Descriptor, dest: string, opts: FetchBlobOptions): Promise<FetchBlobResult> {
    const { algorithm } = parseDigest(desc.digest);
    const source = `${ep.host}/${ep.repository}`;
    const ctx: BlobJob = {
      desc,
      algorithm,
      dest,
      partial: `${dest}.partial`,
      what: `blob ${desc.digest} from ${source}`,
      source,
      opts,
      requests: 0,
      resumedFrom: -1,
    };
    const { partial, what } = ctx;
    const attempts = Math.max(1, this.opts.blobAttempts ?? 4);
    await fs.promises.mkdir(path.dirname(dest), { recursive: true });
    let restartedClean = false;
    let lastError: unknown;
    // Connection failures are retried only once this endpoint has answered: a registry (or
    // mirror) that is down from the start is reported at once, or the next mirror tried.
    let answered = false;

    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (opts.signal?.aborted) throw canceled(what, opts.signal.reason);
      // What is already on disk: hash it, so the digest covers the whole file.
      let hash = crypto.createHash(algorithm);
      let offset = await fileSize(partial);
      if (offset > desc.size) {
        await fs.promises.rm(partial, { force: true });
        offset = 0;
      }
      if (offset > 0) await hashFile(partial, hash);
      if (ctx.resumedFrom === -1) ctx.resumedFrom = offset;
      // An empty blob needs no request; it is checked like any other.
      if (desc.size === 0) await fs.promises.writeFile(partial, '');

      if (offset === desc.size) {
        const actual = `${algorithm}:${hash.digest('hex')}`;
        if (actual === desc.digest) {
          await finish(partial, dest);
          opts.onProgress?.({ digest: desc.digest, completed: desc.size, total: desc.size });
          return this.blobResult(ctx);
        }
        // A full-length .partial with the wrong content (another blob's, or corrupted): start over once.
        await fs.promises.rm(partial, { force: true });
        if (restartedClean) throw digestMismatch(`blob ${desc.digest}`, desc.digest, actual, source);
        restartedClean = true;
        attempt--;
        continue;
      }

      const headers: Record<string, string> = {};
      if (offset > 0) headers.range = `bytes=${offset}-`;
      let res: Response;
      try {
        ctx.requests++;
        res = await this.send(ep, { method: 'GET', target: `/v2/${ep.repository}/blobs/${desc.digest}`, headers, scopes: [pullScope(ep.repository)], signal: opts.signal, what });
      } catch (err) {
        if (isAbort(err, opts.signal)) throw canceled(what, err);
        if (answered && err instanceof BurrowError && err.code === 'EREGISTRY_UNREACHABLE' && attempt < attempts) {
          lastError = err;
          await sleep(200 * attempt);
          continue;
        }
        throw err;
      }
      answered = true;

      if (res.status === 206 && offset > 0) {
        const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(headerString(res.headers['content-range']) ?? '');
        if (!range || Number(range[1]) !== offset) {
          // Not the range we asked for: take the whole blob again.
          await drain(res.body);
          await fs.promises.rm(partial, { force: true });
          lastError = new Error('the registry answered a range request with another range');
          continue;
        }
      } else if (res.status === 200) {
        if (offset > 0) {
          // The server ignored Range: the body is the whole blob.
          offset = 0;
          hash = crypto.createHash(algorithm);
        }
      } else if (res.status === 416) {
        await drain(res.body);
        await fs.promises.rm(partial, { force: true });
        lastError = new Error('416 Range Not Satisfiable');
        continue;
      } else {
        const err = await this.statusError(ep, res, what);
        if (res.status >= 500 && attempt < attempts) {
          lastError = err;
          await sleep(200 * attempt);
          continue;
        }
        throw err;
      }
      try {
        return await this.writeBlobBody(ctx, res, hash, offset, attempt < attempts);
      } catch (err) {
        if (err instanceof RetryableDrop) {
          lastError = err.cause;
          continue;
        }
        if (err instanceof BurrowError && err.code === 'EDIGEST_MISMATCH' && offset > 0 && !restartedClean) {
          // The bytes kept from before may be what is wrong: one more try from nothing.
          restartedClean = true;
          attempt--;
          continue;
        }
        throw err;
      }
    }
    throw new BurrowError(
      'EREGISTRY_UNREACHABLE',
      `${what}: the download failed ${attempts} times (${(lastError as Error | undefined)?.message ?? 'connection dropped'}); what arrived is kept in ${partial} and the next pull resumes it`,
      'check the network and pull again',
      { cause: lastError },
    );
  }

  private blobResult(ctx: BlobJob): FetchBlobResult {
    return { path: ctx.dest, digest: ctx.desc.digest, size: ctx.desc.size, resumedFrom: Math.max(0, ctx.resumedFrom), requests: ctx.requests, source: ctx.source };
  }

  /**
   * Streams one response body onto the .partial (after `offset` bytes, which `hash` already
   * covers). Throws RetryableDrop when the connection drops and another attempt is allowed.
   */
  private async writeBlobBody(ctx: BlobJob, res: Response, hash: crypto.Hash, offset: number, mayRetry: boolean): Promise<FetchBlobResult> {
    const { desc, partial, what, opts } = ctx;
    const cl = headerString(res.headers['content-length']);
    if (cl !== undefined && Number(cl) !== desc.size - offset) {
      res.body.destroy();
      await fs.promises.rm(partial, { force: true });
      throw new BurrowError('ESIZE_MISMATCH', `${what}: the registry sends ${Number(cl) + offset} bytes, the descriptor says ${desc.size}`);
    }
    const fh = await fs.promises.open(partial, offset > 0 ? 'a' : 'w', 0o644);
    opts.tap?.start(partial, offset);
    let open = true;
    const close = async (): Promise<void> => {
      if (open) {
        open = false;
        await fh.close();
      }
    };
    let written = offset;
    // Network reads (tens of KiB each) are written a batch at a time: one writev per MiB instead
    // of a thread-pool round trip per read. `received` counts what was hashed, `written` what is
    // in the file (the only count the tap and a resumed attempt may rely on).
    let received = offset;
    let batch: Buffer[] = [];
    const flush = async (): Promise<void> => {
      if (!batch.length) return;
      const bufs = batch;
      const n = received - written;
      batch = [];
      let { bytesWritten } = await fh.writev(bufs);
      // A short write (a full disk, a signal): the rest one buffer at a time, which reports why.
      if (bytesWritten < n) {
        const rest = Buffer.concat(bufs).subarray(bytesWritten);
        for (let off = 0; off < rest.length; ) off += (await fh.write(rest, off)).bytesWritten;
        bytesWritten = n;
      }
      written += bytesWritten;
      opts.tap?.written(written);
      opts.onProgress?.({ digest: desc.digest, completed: written, total: desc.size });
    };
    try {
      try {
        for await (const chunk of res.body) {
          const b = chunk as Buffer;
          if (received + b.length > desc.size) {
            res.body.destroy();
            await close();
            await fs.promises.rm(partial, { force: true });
            throw new BurrowError('ESIZE_MISMATCH', `${what}: the registry sent more than the ${desc.size} bytes the descriptor says`);
          }
          hash.update(b);
          batch.push(b);
          received += b.length;
          if (received - written >= WRITE_BATCH) await flush();
        }
        await flush();
      } catch (err) {
        if (err instanceof BurrowError) throw err;
        // Keep what arrived: the next attempt (or the next pull) hashes it again and continues.
        await flush().catch(() => undefined);
        await fh.sync().catch(() => undefined);
        await close();
        if (isAbort(err, opts.signal)) throw canceled(what, err);
        if (mayRetry) throw new RetryableDrop(err);
        throw new BurrowError(
          'EREGISTRY_UNREACHABLE',
          `${what}: the connection dropped after ${written} of ${desc.size} bytes (${(err as Error).message}); the next pull resumes from ${partial}`,
          'check the network and pull again',
          { cause: err },
        );
      }
      if (written < desc.size) {
        await fh.sync();
        await close();
        if (mayRetry) throw new RetryableDrop(new Error(`the body ended after ${written} of ${desc.size} bytes`));
        throw new BurrowError('ESIZE_MISMATCH', `${what}: got ${written} bytes, the descriptor says ${desc.size}`);
      }
      const actual = `${ctx.algorithm}:${hash.digest('hex')}`;
      if (actual !== desc.digest) {
        await close();
        await fs.promises.rm(partial, { force: true });
        throw digestMismatch(`blob ${desc.digest}`, desc.digest, actual, ctx.source);
      }
      await fh.sync();
      await close();
      await finish(partial, ctx.dest);
      return this.blobResult(ctx);
    } finally {
      await close().catch(() => undefined);
    }
  }

  // ---- endpoints, mirrors ----------------------------------------------------------------------

  private upstream(repo: RepoRef): Endpoint {
    return { registry: repo.registry, host: registryApiHost(repo.registry), repository: repo.repository, mirror: false, forceHttp: false };
  }

  private pullEndpoints(repo: RepoRef): Endpoint[] {
    const out: Endpoint[] = [];
    for (const m of this.opts.mirrors?.[repo.registry] ?? []) {
      const forceHttp = /^http:\/\//i.test(m);
      const rest = m.replace(/^https?:\/\//i, '').replace(/\/+$/, '');
      const slash = rest.indexOf('/');
      const host = slash === -1 ? rest : rest.slice(0, slash);
      const prefix = slash === -1 ? '' : rest.slice(slash + 1);
      out.push({ registry: host, host, repository: prefix ? `${prefix}/${repo.repository}` : repo.repository, mirror: true, forceHttp });
    }
    out.push(this.upstream(repo));
    return out;
  }

  /** Tries each mirror, then the registry; a mirror's failure (any but a cancel) moves on. */
  private async withMirrors<T>(repo: RepoRef, fn: (ep: Endpoint) => Promise<T>): Promise<T> {
    const eps = this.pullEndpoints(repo);
    for (const ep of eps) {
      try {
        return await fn(ep);
      } catch (err) {
        if (!ep.mirror || (err instanceof BurrowError && err.code === 'ECANCELED')) throw err;
      }
    }
    throw new BurrowError('EINTERNAL', 'no endpoint to try'); // unreachable: the registry itself is last
  }

  // ---- authentication --------------------------------------------------------------------------

  private state(host: string): HostState {
    let s = this.hosts.get(host);
    if (!s) {
      s = {};
      this.hosts.set(host, s);
    }
    return s;
  }

  private credentialsFor(ep: Endpoint): Promise<Credentials | undefined> {
    const key = `${ep.registry}\0${ep.repository}`;
    let p = this.creds.get(key);
    if (!p) {
      const lookup = this.opts.credentials ?? ((r: string, repo: string) => getCredentials(r, repo, this.opts.authEnv));
      p = lookup(ep.registry, ep.repository);
      this.creds.set(key, p);
      p.catch(() => this.creds.delete(key));
    }
    return p;
  }

  private async authorization(ep: Endpoint, scopes: string[], notBefore: bigint, signal: AbortSignal | undefined): Promise<string | undefined> {
    const ch = this.state(ep.host).challenge;
    if (!ch) return undefined;
    const creds = await this.credentialsFor(ep);
    if (ch.scheme === 'basic') return creds && creds.username ? basic(creds) : undefined;
    const key = JSON.stringify([ch.realm, ch.service ?? '', [...scopes].sort(), creds?.username ?? '', creds?.identityToken ? 'id' : '']);
    const cached = this.tokens.get(key);
    if (cached && cached.obtainedAt >= notBefore && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;
    let running = this.tokenFetches.get(key);
    if (!running || running.startedAt < notBefore) {
      const startedAt = process.hrtime.bigint();
      const want = [...new Set([...scopes, ...ch.scope])];
      const promise = this.requestToken(ep, ch, want, creds, signal).then((t) => {
        const token: Token = { ...t, obtainedAt: startedAt };
        this.tokens.set(key, token);
        return token;
      });
      running = { startedAt, promise };
      this.tokenFetches.set(key, running);
      const mine = running;
      promise.then(
        () => this.tokenFetches.get(key) === mine && this.tokenFetches.delete(key),
        () => this.tokenFetches.get(key) === mine && this.tokenFetches.delete(key),
      );
    }
    return `Bearer ${(await running.promise).token}`;
  }

  /** The token request of the Docker token spec (GET with Basic), or OAuth2 with a refresh token. */
  private async requestToken(
    ep: Endpoint,
    ch: Extract<Challenge, { scheme: 'bearer' }>,
    scopes: string[],
    creds: Credentials | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ token: string; expiresAt: number }> {
    let realm: URL;
    try {
      realm = new URL(ch.realm);
    } catch {
      throw new BurrowError('EREGISTRY_AUTH', `${ep.host} sent an authentication challenge with an invalid realm: ${ch.realm}`);
    }
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') throw new BurrowError('EREGISTRY_AUTH', `${ep.host}: unsupported token realm ${ch.realm}`);
    // Credentials go over plain HTTP only to a loopback or insecure token server.
    const sendCreds = creds && (realm.protocol === 'https:' || this.isInsecure(realm.host));
    const headers: Record<string, string> = { 'user-agent': this.userAgent() };
    let method: Method = 'GET';
    let body: Buffer | undefined;
    if (sendCreds && creds.identityToken) {
      method = 'POST';
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'burrow' });
      if (ch.service !== undefined) form.set('service', ch.service);
      if (scopes.length) form.set('scope', scopes.join(' '));
      body = Buffer.from(form.toString());
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers['content-length'] = String(body.length);
    } else {
      if (ch.service !== undefined) realm.searchParams.set('service', ch.service);
      for (const s of scopes) realm.searchParams.append('scope', s);
      if (sendCreds && creds.username) headers.authorization = basic(creds);
    }
    const what = `token for ${ep.host} from ${realm.origin}${realm.pathname}`;
    const res = await this.rawFollow(realm, method, headers, body ? () => body : undefined, signal, what);
    if (res.status === 401 || res.status === 403) {
      await drain(res.body);
      throw this.authError(ep, scopes, creds, `the token server ${realm.origin} refused ${creds ? 'the credentials' : 'anonymous access'}`);
    }
    if (res.status !== 200) throw await this.statusError(ep, res, what);
    const text = await readBody(res.body, TOKEN_BODY_LIMIT, what);
    let j: unknown;
    try {
      j = JSON.parse(text.toString('utf8'));
    } catch {
      throw new BurrowError('EREGISTRY_AUTH', `${what}: the answer is not JSON`);
    }
    const o = (typeof j === 'object' && j !== null ? j : {}) as Record<string, unknown>;
    const token = typeof o.token === 'string' && o.token ? o.token : typeof o.access_token === 'string' && o.access_token ? o.access_token : undefined;
    if (!token) throw new BurrowError('EREGISTRY_AUTH', `${what}: the answer has no token`);
    // The spec's default lifetime is 60 s; renew a little early.
    const life = typeof o.expires_in === 'number' && o.expires_in > 0 ? o.expires_in : 60;
    return { token, expiresAt: Date.now() + Math.max(5, life - 10) * 1000 };
  }

  private authError(ep: Endpoint, scopes: string[], creds: Credentials | undefined, why?: string): BurrowError {
    const access = scopes.length ? ` (${scopes.map((s) => s.replace(/^repository:/, '')).join(', ')})` : '';
    const msg = creds
      ? `${ep.host} refused access${access} with the credentials from ${creds.source}${why ? `: ${why}` : ''}`
      : `${ep.host} requires authentication${access}${why ? `: ${why}` : ''}; the repository may also not exist`;
    return new BurrowError('EREGISTRY_AUTH', msg, `burrow login ${ep.registry}`);
  }

  /**
   * One request with authentication: sent (with a cached token or Basic credentials when the
   * host is known to want them), and on a 401 sent once more after the challenge is answered.
   */
  private async send(ep: Endpoint, o: SendOptions): Promise<Response> {
    let notBefore = 0n;
    for (let attempt = 0; attempt < 2; attempt++) {
      const headers: Record<string, string> = { 'user-agent': this.userAgent(), ...o.headers };
      const sentAt = process.hrtime.bigint();
      // Credentials go only to the endpoint itself, not to an upload location on another host.
      const sameHost = !(o.target instanceof URL) || o.target.host === ep.host;
      const authz = sameHost ? await this.authorization(ep, o.scopes, notBefore, o.signal) : undefined;
      if (authz) headers.authorization = authz;
      const res = await this.transport(ep, o.method, o.target, headers, o.body, o.signal, o.what);
      if (res.status !== 401 && res.status !== 403) return res;
      await drain(res.body);
      const ch = parseChallenge(headerString(res.headers['www-authenticate']));
      const creds = await this.credentialsFor(ep);
      if (res.status === 403 || !ch || attempt === 1) {
        throw this.authError(ep, o.scopes, creds, res.status === 403 ? 'denied' : undefined);
      }
      if (ch.scheme === 'basic' && (!creds || !creds.username)) throw this.authError(ep, o.scopes, undefined);
      this.state(ep.host).challenge = ch;
      notBefore = sentAt;
    }
    throw new BurrowError('EINTERNAL', 'unreachable');
  }

  /** Sends to an endpoint over HTTPS, or HTTP when it is insecure and does not speak TLS (learned once per host). */
  private async transport(
    ep: Endpoint,
    method: Method,
    target: string | URL,
    headers: Record<string, string>,
    body: (() => Readable | Buffer) | undefined,
    signal: AbortSignal | undefined,
    what = `${ep.host}`,
  ): Promise<Response> {
    if (target instanceof URL) return this.rawFollow(target, method, headers, body, signal, what);
    const st = this.state(ep.host);
    if (!ep.forceHttp && st.scheme === undefined && this.isInsecure(ep.host)) {
      // An insecure host (a loopback registry, usually) that answers plain HTTP is spoken to
      // in HTTP straight away: trying TLS first would load the CA store (~50 ms) only to fail.
      st.probe ??= speaksHttp(ep.host, signal);
      if (await st.probe) st.scheme ??= 'http';
    }
    const scheme = ep.forceHttp ? 'http' : (st.scheme ?? 'https');
    try {
      const res = await this.rawFollow(new URL(`${scheme}://${ep.host}${target}`), method, headers, body, signal, what, true);
      st.scheme ??= scheme;
      return res;
    } catch (err) {
      // A request that started on HTTPS while another learned that the host speaks HTTP falls back too.
      const fallback = scheme === 'https' && st.scheme !== 'https' && this.isInsecure(ep.host) && !isCertError(err) && !isAbort(err, signal);
      if (!fallback) throw this.networkError(err, new URL(`${scheme}://${ep.host}${target}`), what, signal);
      try {
        const res = await this.rawFollow(new URL(`http://${ep.host}${target}`), method, headers, body, signal, what, true);
        st.scheme = 'http';
        return res;
      } catch (err2) {
        throw this.networkError(err2, new URL(`http://${ep.host}${target}`), what, signal);
      }
    }
  }

  private networkError(err: unknown, url: URL, what: string, signal: AbortSignal | undefined): BurrowError {
    if (err instanceof BurrowError) return err;
    if (isAbort(err, signal)) return canceled(what, err);
    const e = err as NodeJS.ErrnoException;
    const host = url.host;
    if (isCertError(err)) {
      return new BurrowError(
        'EREGISTRY_TLS',
        `cannot verify the TLS certificate of ${url.origin}: ${certProblem(e)}`,
        `put the registry's CA certificate in ~/.config/burrow/certs.d/${host}/ca.crt (or /etc/containers/certs.d/${host}/); or, for a registry you trust on this network, ${insecureFix(host)}`,
        { cause: err },
      );
    }
    if (url.protocol === 'https:' && isProtocolError(err)) {
      // OpenSSL's own text ("…:error:0A00010B:SSL routines:ssl3_get_record:wrong version number") tells a user nothing.
      const plain = /wrong version number|packet length too long|http request/i.test(e.message);
      return new BurrowError(
        'EREGISTRY_TLS',
        plain ? `${url.origin} does not speak TLS: the registry answers in plain HTTP, and it is not marked insecure` : `the TLS handshake with ${url.origin} failed: the registry may not speak TLS, and it is not marked insecure`,
        `if ${host} is meant to be reached over plain HTTP, ${insecureFix(host)}`,
        { cause: err },
      );
    }
    return new BurrowError('EREGISTRY_UNREACHABLE', `cannot reach the registry at ${url.href}: ${e.code ? `${e.code} ` : ''}${e.message}`, 'check the registry address and the network', {
      cause: err,
    });
  }

  /** Sends a request, following redirects (without the Authorization header to another host). */
  private async rawFollow(
    url: URL,
    method: Method,
    headers: Record<string, string>,
    body: (() => Readable | Buffer) | undefined,
    signal: AbortSignal | undefined,
    what: string,
    rawErrors = false,
  ): Promise<Response> {
    let current = url;
    const hdrs = { ...headers };
    for (let i = 0; ; i++) {
      let res: http.IncomingMessage;
      try {
        res = await this.rawOnce(current, method, hdrs, body, signal);
      } catch (err) {
        if (rawErrors && i === 0) throw err;
        throw this.networkError(err, current, what, signal);
      }
      const status = res.statusCode ?? 0;
      const loc = headerString(res.headers.location);
      if (!REDIRECTS.has(status) || !loc || (method !== 'GET' && method !== 'HEAD')) {
        return { status, statusMessage: res.statusMessage ?? '', headers: res.headers, body: res, url: current };
      }
      await drain(res);
      if (i >= MAX_REDIRECTS) throw new BurrowError('EREGISTRY', `${what}: too many redirects`);
      const next = new URL(loc, current);
      if (next.protocol === 'http:' && current.protocol === 'https:' && !this.isInsecure(next.host)) {
        throw new BurrowError('EREGISTRY', `${what}: refused a redirect from HTTPS to plain HTTP (${next.origin})`);
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new BurrowError('EREGISTRY', `${what}: refused a redirect to ${next.protocol}`);
      if (next.host !== current.host) delete hdrs.authorization;
      current = next;
    }
  }

  private rawOnce(url: URL, method: Method, headers: Record<string, string>, body: (() => Readable | Buffer) | undefined, signal: AbortSignal | undefined): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const secure = url.protocol === 'https:';
      const timeout = this.opts.timeoutMs ?? 60_000;
      const options: http.RequestOptions = { method, headers, agent: secure ? this.agentFor(url.host) : this.httpAgent, timeout };
      if (signal) options.signal = signal;
      const req = (secure ? https : http).request(url, options);
      req.on('response', resolve);
      req.on('error', reject);
      req.on('timeout', () => {
        const e: NodeJS.ErrnoException = new Error(`no data for ${timeout / 1000} s`);
        e.code = 'ETIMEDOUT';
        req.destroy(e);
      });
      if (!body) {
        req.end();
        return;
      }
      const b = body();
      if (Buffer.isBuffer(b)) {
        req.end(b);
      } else {
        b.on('error', (e) => req.destroy(e));
        b.pipe(req);
      }
    });
  }

  /** An HTTPS agent per host: system CAs plus the host's certs.d CAs, its client certificate, tlsVerify. */
  private agentFor(host: string): http.Agent {
    let a = this.agents.get(host);
    if (a) return a;
    const extraCa: string[] = [];
    let cert: string | undefined;
    let key: string | undefined;
    for (const dir of this.certDirs()) {
      const d = path.join(dir, host);
      let names: string[];
      try {
        names = fs.readdirSync(d).sort();
      } catch {
        continue;
      }
      for (const n of names) {
        const p = path.join(d, n);
        if (n.endsWith('.crt')) extraCa.push(fs.readFileSync(p, 'utf8'));
        else if (n.endsWith('.cert') && cert === undefined) {
          const k = path.join(d, n.replace(/\.cert$/, '.key'));
          if (fs.existsSync(k)) {
            cert = fs.readFileSync(p, 'utf8');
            key = fs.readFileSync(k, 'utf8');
          }
        }
      }
    }
    const o: https.AgentOptions = { keepAlive: true, maxSockets: 16, rejectUnauthorized: this.opts.tlsVerify !== false, ca: [...systemCaList(), ...extraCa] };
    if (cert !== undefined && key !== undefined) {
      o.cert = cert;
      o.key = key;
    }
    a = new https.Agent(o);
    this.agents.set(host, a);
    return a;
  }

  private certDirs(): string[] {
    if (this.opts.certDirs) return this.opts.certDirs;
    const env = this.opts.authEnv?.env ?? process.env;
    const home = this.opts.authEnv?.home ?? env.HOME ?? os.homedir();
    return [path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'burrow', 'certs.d'), '/etc/containers/certs.d'];
  }

  private isInsecure(host: string): boolean {
    const h = host.toLowerCase();
    return isLoopback(h) || this.insecure.has(h) || this.insecure.has(hostOnly(h));
  }

  private userAgent(): string {
    return this.opts.userAgent ?? `burrow/${VERSION} (${process.platform}; ${process.arch})`;
  }

  private async statusError(ep: Endpoint, res: Response, what: string): Promise<BurrowError> {
    const body = await readBody(res.body, ERROR_BODY_LIMIT, what).catch(() => Buffer.alloc(0));
    const detail = registryErrorText(body);
    if (res.status === 404) {
      return new BurrowError('EREGISTRY_NOT_FOUND', `${what}: not found${detail ? ` (${detail.toLowerCase()})` : ''}`, 'check the name and tag (the registry\'s web page lists what exists)');
    }
    if (res.status === 401 || res.status === 403) {
      return new BurrowError('EREGISTRY_AUTH', `${what}: ${res.status} ${res.statusMessage}${detail ? `: ${detail}` : ''}`, `burrow login ${ep.registry}`);
    }
    return new BurrowError('EREGISTRY', `${what}: the registry at ${res.url.origin} answered ${res.status} ${res.statusMessage}${detail ? `: ${detail}` : ''}`);
  }
}

interface BlobJob {
  desc: Descriptor;
  algorithm: string;
  dest: string;
  partial: string;
  what: string;
  source: string;
  opts: FetchBlobOptions;
  requests: number;
  resumedFrom: number;
}

class RetryableDrop extends Error {
  constructor(cause: unknown) {
    super((cause as Error | undefined)?.message ?? 'connection dropped', { cause });
  }
}

function basic(c: { username: string; password: string }): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64')}`;
}

function headerString(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function fileSize(p: string): Promise<number> {
  try {
    return (await fs.promises.stat(p)).size;
  } catch {
    return 0;
  }
}

async function hashFile(p: string, hash: crypto.Hash): Promise<void> {
  for await (const chunk of fs.createReadStream(p)) hash.update(chunk as Buffer);
}

/** Makes a verified .partial durable, renames it into place and makes the rename durable. */
async function finish(partial: string, dest: string): Promise<void> {
  const fh = await fs.promises.open(partial, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.promises.rename(partial, dest);
  const dir = await fs.promises.open(path.dirname(dest), 'r');
  try {
    await dir.sync();
  } catch {
    /* some filesystems cannot fsync a directory */
  } finally {
    await dir.close();
  }
}
