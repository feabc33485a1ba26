// Starts Debian's docker-registry (distribution 2.8) on 127.0.0.1 for tests, with its storage in
// a fresh temporary directory, in one of four modes:
//   anonymous  plain HTTP, no authentication
//   htpasswd   plain HTTP, Basic authentication against a bcrypt htpasswd file
//   token      plain HTTP, Bearer tokens from a token server run here in Node: real JWTs (ES256)
//              signed with a key made by openssl, trusted by the registry through a self-signed
//              certificate of that key (auth.token.rootcertbundle)
//   tls        HTTPS with a certificate for 127.0.0.1 (SAN IP) from a test CA made by openssl
// The registry picks a free port itself (addr 127.0.0.1:0) and the port is read from its log,
// so there is no race for ports. stop() ends exactly the process started here, by PID.
// Works as root and as an unprivileged user: everything is written under os.tmpdir().
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';

export const REGISTRY_BIN = process.env.BURROW_TEST_REGISTRY || '/usr/bin/docker-registry';
export const MODES = ['anonymous', 'htpasswd', 'token', 'tls'];
const SERVICE = 'burrow-test-registry';
const ISSUER = 'burrow-test-token-issuer';

const running = new Set();
process.on('exit', () => {
  // A test that crashed before stop(): do not leave registries behind.
  for (const pid of running) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** An EC P-256 key and a self-signed certificate for it (the token signer). */
function makeSigner(dir) {
  const key = path.join(dir, 'token.key');
  const cert = path.join(dir, 'token.crt');
  sh('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=burrow-test-token-signer', '-days', '2']);
  const pem = fs.readFileSync(cert, 'utf8');
  const der = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  return { keyFile: key, certFile: cert, privateKey: crypto.createPrivateKey(fs.readFileSync(key)), x5c: [der] };
}

/** Signs a JWT the way distribution's token auth wants it: ES256, the signer's certificate in x5c. */
export function signJwt(signer, claims) {
  const header = { typ: 'JWT', alg: 'ES256', x5c: signer.x5c };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const sig = crypto.sign('sha256', Buffer.from(input), { key: signer.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64url(sig)}`;
}

/** `repository:name:pull,push` → {type, name, actions}; names never contain ':' but types may have a class. */
function parseScope(s) {
  const first = s.indexOf(':');
  const last = s.lastIndexOf(':');
  if (first === -1 || last === first) return null;
  return { type: s.slice(0, first).replace(/\(.*\)$/, ''), name: s.slice(first + 1, last), actions: s.slice(last + 1).split(',').filter(Boolean) };
}

/**
 * The token server: Basic credentials of `user` get every action asked for; anonymous callers
 * get `pull` when anonymousPull is set and nothing otherwise (the registry then refuses them,
 * as Docker Hub does for private repositories); wrong credentials get 401.
 */
function startTokenServer({ signer, user, password, anonymousPull, ttl, stats }) {
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://token');
    if (u.pathname !== '/token' || req.method !== 'GET') {
      res.writeHead(404).end();
      return;
    }
    stats.tokenRequests++;
    stats.scopes.push(u.searchParams.getAll('scope'));
    let subject = '';
    const auth = req.headers.authorization;
    if (auth) {
      const m = /^Basic\s+(.+)$/i.exec(auth);
      const [u1, ...p] = m ? Buffer.from(m[1], 'base64').toString('utf8').split(':') : [];
      if (u1 !== user || p.join(':') !== password) {
        res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="burrow-test-token"' });
        res.end(JSON.stringify({ details: 'incorrect username or password' }));
        return;
      }
      subject = user;
    }
    const access = [];
    for (const s of u.searchParams.getAll('scope').flatMap((x) => x.split(' ')).filter(Boolean)) {
      const sc = parseScope(s);
      if (!sc) continue;
      const actions = subject ? sc.actions : anonymousPull ? sc.actions.filter((a) => a === 'pull') : [];
      if (actions.length) access.push({ type: sc.type, name: sc.name, actions });
    }
    const now = Math.floor(Date.now() / 1000);
    const token = signJwt(signer, {
      iss: ISSUER,
      sub: subject,
      aud: u.searchParams.get('service') ?? SERVICE,
      exp: now + ttl,
      nbf: now - 10,
      iat: now,
      jti: crypto.randomBytes(12).toString('hex'),
      access,
    });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: ttl, issued_at: new Date(now * 1000).toISOString() }));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

/** A test CA and a server certificate for 127.0.0.1 and localhost signed by it. */
function makeTls(dir) {
  const caKey = path.join(dir, 'ca.key');
  const caFile = path.join(dir, 'ca.crt');
  const key = path.join(dir, 'server.key');
  const csr = path.join(dir, 'server.csr');
  const cert = path.join(dir, 'server.crt');
  const ext = path.join(dir, 'server.ext');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  sh('openssl', ['req', '-x509', ...ec, '-keyout', caKey, '-out', caFile, '-subj', '/CN=burrow test CA', '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  sh('openssl', ['req', '-new', ...ec, '-keyout', key, '-out', csr, '-subj', '/CN=127.0.0.1']);
  fs.writeFileSync(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n');
  sh('openssl', ['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', cert]);
  return { caFile, certFile: cert, keyFile: key };
}

function waitForPort(logFile, child, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = () => {
      const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '';
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(log);
      if (m) return resolve(Number(m[1]));
      if (child.exitCode !== null || child.signalCode !== null) return reject(new Error(`docker-registry exited (${child.exitCode ?? child.signalCode}):\n${log}`));
      if (Date.now() > deadline) return reject(new Error(`docker-registry did not start within ${timeoutMs} ms:\n${log}`));
      setTimeout(tick, 25);
    };
    tick();
  });
}

/** GET /v2/ until the registry answers (any status: 200, or 401 when it wants authentication). */
async function waitForApi(url, caFile, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const status = await new Promise((resolve, reject) => {
        const mod = url.startsWith('https:') ? https : http;
        const req = mod.get(`${url}/v2/`, caFile ? { ca: fs.readFileSync(caFile) } : {}, (res) => {
          res.resume();
          resolve(res.statusCode);
        });
        req.on('error', reject);
        req.setTimeout(2000, () => req.destroy(new Error('timeout')));
      });
      if (status === 200 || status === 401) return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    if (Date.now() > deadline) throw new Error(`${url}/v2/ did not answer`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts a registry. Options: mode (see above), user/password (htpasswd, token; generated when
 * not given), anonymousPull (token mode: anonymous callers may pull), tokenTtl (seconds).
 * Returns {mode, host: '127.0.0.1:PORT', url, dir, storageDir, logFile, pid, caFile?, certsDir?,
 * certDir?, user?, password?, stats: {tokenRequests, scopes}, tokenRealm?, stop()}.
 *   certsDir  a containers-certs.d style directory with HOST/ca.crt (for the client's certDirs)
 *   certDir   certsDir/HOST itself (for skopeo --dest-cert-dir)
 */
export async function startRegistry({ mode = 'anonymous', user = 'burrow', password, anonymousPull = false, tokenTtl = 300 } = {}) {
  if (!MODES.includes(mode)) throw new Error(`unknown registry mode ${mode}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `burrow-registry-${mode}-`));
  const storageDir = path.join(dir, 'storage');
  fs.mkdirSync(storageDir);
  const logFile = path.join(dir, 'registry.log');
  const stats = { tokenRequests: 0, scopes: [] };
  const config = {
    version: 0.1,
    log: { level: 'info', formatter: 'text', accesslog: { disabled: false } },
    storage: { filesystem: { rootdirectory: storageDir }, delete: { enabled: true }, maintenance: { uploadpurging: { enabled: false } } },
    http: { addr: '127.0.0.1:0', secret: crypto.randomBytes(16).toString('hex'), headers: { 'X-Content-Type-Options': ['nosniff'] } },
  };
  const out = { mode, dir, storageDir, logFile, stats };
  let tokenServer;
  let tlsFiles;
  if (mode === 'htpasswd' || mode === 'token') {
    password ??= crypto.randomBytes(9).toString('base64url');
    out.user = user;
    out.password = password;
  }
  if (mode === 'htpasswd') {
    const file = path.join(dir, 'htpasswd');
    fs.writeFileSync(file, sh('htpasswd', ['-Bbn', user, password]));
    config.auth = { htpasswd: { realm: 'burrow-test', path: file } };
  } else if (mode === 'token') {
    const signer = makeSigner(dir);
    tokenServer = await startTokenServer({ signer, user, password, anonymousPull, ttl: tokenTtl, stats });
    out.tokenRealm = `http://127.0.0.1:${tokenServer.address().port}/token`;
    config.auth = { token: { realm: out.tokenRealm, service: SERVICE, issuer: ISSUER, rootcertbundle: signer.certFile } };
  } else if (mode === 'tls') {
    tlsFiles = makeTls(dir);
    config.http.tls = { certificate: tlsFiles.certFile, key: tlsFiles.keyFile };
  }
  // JSON is YAML, and saves quoting worries.
  const configFile = path.join(dir, 'config.yml');
  fs.writeFileSync(configFile, JSON.stringify(config, null, 2));

  const logFd = fs.openSync(logFile, 'a');
  const child = spawn(REGISTRY_BIN, ['serve', configFile], { stdio: ['ignore', logFd, logFd], cwd: dir, env: { PATH: process.env.PATH, HOME: process.env.HOME ?? dir } });
  fs.closeSync(logFd);
  running.add(child.pid);
  const stopRegistry = async () => {
    running.delete(child.pid);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      try {
        process.kill(child.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      const t = setTimeout(() => {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }, 3000);
      await exited;
      clearTimeout(t);
    }
    if (tokenServer) await new Promise((r) => tokenServer.close(r));
  };
  try {
    const port = await waitForPort(logFile, child, 15_000);
    out.host = `127.0.0.1:${port}`;
    out.url = `${mode === 'tls' ? 'https' : 'http'}://${out.host}`;
    if (tlsFiles) {
      out.caFile = tlsFiles.caFile;
      out.certsDir = path.join(dir, 'certs.d');
      out.certDir = path.join(out.certsDir, out.host);
      fs.mkdirSync(out.certDir, { recursive: true });
      fs.copyFileSync(tlsFiles.caFile, path.join(out.certDir, 'ca.crt'));
    }
    await waitForApi(out.url, out.caFile, 15_000);
  } catch (err) {
    await stopRegistry();
    throw err;
  }
  out.pid = child.pid;
  out.log = () => fs.readFileSync(logFile, 'utf8');
  /** Stops the registry (and the token server); `keep: true` leaves the directory for a look. */
  out.stop = async ({ keep = false } = {}) => {
    await stopRegistry();
    if (!keep) fs.rmSync(dir, { recursive: true, force: true });
  };
  return out;
}

/** The path of a blob's data in a registry's storage (to tamper with it in tests). */
export function blobDataPath(registry, digest) {
  const [alg, hex] = digest.split(':');
  return path.join(registry.storageDir, 'docker', 'registry', 'v2', 'blobs', alg, hex.slice(0, 2), hex, 'data');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // `node test/harness/registry.mjs [mode]`: start one for manual poking; Ctrl-C stops it.
  const r = await startRegistry({ mode: process.argv[2] ?? 'anonymous' });
  process.stdout.write(JSON.stringify({ host: r.host, url: r.url, user: r.user, password: r.password, caFile: r.caFile, dir: r.dir }) + '\n');
  process.on('SIGINT', () => r.stop().then(() => process.exit(0)));
}
