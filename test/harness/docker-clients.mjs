// The real Docker clients of the Engine API tests (issue 14), and what they need around them:
//
//   dockerCli()                        Debian's docker.io 20.10 CLI (API 1.41), unpacked from the
//                                      package by .ci/setup into /var/cache/burrow-test/docker.io;
//                                      never the package installed, so no dockerd on the machine
//   composeBin()                       Debian's docker-compose 1.29 (/usr/bin/docker-compose)
//   dockerPyPython()                   the python of a venv with docker-py from PyPI (pinned in
//                                      test/harness/docker-py.txt), made by .ci/setup, or here
//   dockerConfigEnv(dir, host)         the environment a client runs in: its own DOCKER_CONFIG and
//                                      HOME under dir (nothing of the user's), DOCKER_HOST
//   startSshd(dir, opts)               an sshd of the test's own on 127.0.0.1 (own host key,
//                                      config, port, authorized key with a forced command) and
//                                      an `ssh` wrapper for the client side; stop() by PID
//   startPodmanService(dir, opts)      `podman system service` with everything private under dir
//                                      (podmanSandbox), the peer the same tests are checked with
//
// A missing tool is an error that names .ci/setup, never a skip: CI must run these tests.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, killPids, podmanSandbox, run, which } from './clients.mjs';

// Re-exported: the compose test takes the port it publishes from here.
export { freePort };

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const CACHE = process.env.BURROW_TEST_CACHE || '/var/cache/burrow-test';
export const DOCKER_IO_CACHE = path.join(CACHE, 'docker.io');
export const DOCKER_PY_REQUIREMENTS = path.join(HERE, 'docker-py.txt');

const SETUP_HINT = 'run .ci/setup as root (it installs the Engine API tests\' clients)';

/** Debian's docker 20.10 CLI from the cache .ci/setup fills ($BURROW_DOCKER_CLI overrides). */
export function dockerCli() {
  if (process.env.BURROW_DOCKER_CLI) return process.env.BURROW_DOCKER_CLI;
  const versions = fs.existsSync(DOCKER_IO_CACHE) ? fs.readdirSync(DOCKER_IO_CACHE).filter((v) => fs.existsSync(path.join(DOCKER_IO_CACHE, v, 'docker'))) : [];
  if (!versions.length) throw new Error(`the docker 20.10 CLI is missing from ${DOCKER_IO_CACHE}: ${SETUP_HINT}`);
  return path.join(DOCKER_IO_CACHE, versions.sort().pop(), 'docker');
}

/** Debian's docker-compose 1.29. */
export function composeBin() {
  const p = which('docker-compose');
  if (!p) throw new Error(`docker-compose is not installed: ${SETUP_HINT} (apt-get install --no-install-recommends docker-compose)`);
  return p;
}

export function dockerPyVersion() {
  const m = /^docker==(\S+)$/m.exec(fs.readFileSync(DOCKER_PY_REQUIREMENTS, 'utf8'));
  if (!m) throw new Error(`${DOCKER_PY_REQUIREMENTS} pins no docker==VERSION`);
  return m[1];
}

/**
 * The python of docker-py's venv: the one .ci/setup made under /var/cache/burrow-test, else one
 * made here (root: in that cache; a user: in ~/.cache/burrow-test) with pip from PyPI.
 */
export function dockerPyPython() {
  const v = dockerPyVersion();
  const dirs = [path.join(CACHE, 'docker-py', v), path.join(os.homedir(), '.cache', 'burrow-test', 'docker-py', v)];
  for (const d of dirs) {
    const py = path.join(d, 'bin', 'python');
    if (fs.existsSync(py)) return py;
  }
  const venvDir = process.getuid() === 0 ? dirs[0] : dirs[1];
  try {
    fs.mkdirSync(path.dirname(venvDir), { recursive: true });
    execFileSync('/usr/bin/python3', ['-m', 'venv', venvDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    execFileSync(path.join(venvDir, 'bin', 'pip'), ['install', '-q', '--disable-pip-version-check', '-r', DOCKER_PY_REQUIREMENTS], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
  } catch (e) {
    fs.rmSync(venvDir, { recursive: true, force: true });
    throw new Error(`could not make docker-py's venv in ${venvDir}: ${e.stderr ?? e.message}; ${SETUP_HINT} (python3-venv)`);
  }
  return path.join(venvDir, 'bin', 'python');
}

/**
 * The environment of a Docker client under `dir`: an empty DOCKER_CONFIG and HOME of its own (no
 * credentials, contexts or config.json of the user), DOCKER_HOST, and `binDirs` first on PATH.
 */
export function dockerConfigEnv(dir, host, { binDirs = [], extra = {} } = {}) {
  const home = path.join(dir, 'client-home');
  fs.mkdirSync(path.join(home, '.docker'), { recursive: true, mode: 0o700 });
  return {
    PATH: [...binDirs, process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin'].join(':'),
    HOME: home,
    DOCKER_CONFIG: path.join(home, '.docker'),
    DOCKER_HOST: host,
    // compose and docker-py print no colour codes and ask nothing.
    NO_COLOR: '1',
    COMPOSE_INTERACTIVE_NO_CLI: '1',
    TMPDIR: os.tmpdir(),
    ...extra,
  };
}

/** Writes an executable shell script. */
export function writeScript(file, body) {
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  fs.chmodSync(file, 0o755);
  return file;
}

/** Single-quotes a word for sh. */
export function shq(s) {
  return `'${String(s).replace(/'/g, `'\\''`)}'`;
}

async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

function connects(opts) {
  return new Promise((resolve) => {
    const s = net.connect(opts);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

// ---- sshd -----------------------------------------------------------------------------------------

/**
 * An sshd of the test's own, as whoever runs the test (root, or the unprivileged user: an sshd
 * that is not root can only log its own user in, on a high port, without PAM): its own host key,
 * sshd_config, port on 127.0.0.1 and authorized_keys file under `dir`. The client key's
 * authorized_keys line forces every session through a wrapper that sets `env` (PATH first) and
 * then runs what the client asked for ($SSH_ORIGINAL_COMMAND), so that the remote `docker system
 * dial-stdio` is the `docker` the test puts first on that PATH.
 * Resolves {port, user, pid, binDir (an `ssh` wrapper using the test's key and known_hosts: put
 * it first on the client's PATH), url (ssh://user@127.0.0.1:port), log(), stop()}.
 */
export async function startSshd(dir, { env = {} } = {}) {
  const sshd = ['/usr/sbin/sshd', '/usr/bin/sshd'].find((p) => fs.existsSync(p));
  if (!sshd) throw new Error(`sshd is not installed: ${SETUP_HINT} (openssh-server)`);
  const ssh = which('ssh');
  if (!ssh) throw new Error(`ssh is not installed: ${SETUP_HINT} (openssh-client)`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const p = (...x) => path.join(dir, ...x);
  const user = os.userInfo().username;
  for (const k of ['host_key', 'client_key']) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `burrow-test-${k}`, '-f', p(k)], { stdio: 'ignore' });
  const port = await freePort();
  const wrapper = writeScript(
    p('session.sh'),
    [
      '# Forced by authorized_keys: the environment of the test, then what the client asked for.',
      ...Object.entries(env).map(([k, v]) => `export ${k}=${shq(v)}`),
      'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"',
    ].join('\n'),
  );
  fs.writeFileSync(p('authorized_keys'), `command="${wrapper}",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding ${fs.readFileSync(p('client_key.pub'), 'utf8').trim()}\n`, { mode: 0o600 });
  const rootful = process.getuid() === 0;
  fs.writeFileSync(
    p('sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${p('host_key')}`,
      `PidFile ${p('sshd.pid')}`,
      `AuthorizedKeysFile ${p('authorized_keys')}`,
      // The test's files live in a temporary directory that StrictModes would judge.
      'StrictModes no',
      'UsePAM no',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      rootful ? 'PermitRootLogin prohibit-password' : '',
      `AllowUsers ${user}`,
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  // sshd started as root chroots its unprivileged child into /run/sshd (compiled in); Debian's
  // unit makes it, and the system's sshd is never started here.
  if (rootful) fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const check = spawn(sshd, ['-t', '-f', p('sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let checkErr = '';
  check.stderr.on('data', (d) => (checkErr += d));
  const checkCode = await new Promise((r) => check.on('close', r));
  if (checkCode !== 0) throw new Error(`sshd -t refused the test's sshd_config: ${checkErr}`);
  const logFd = fs.openSync(p('sshd.log'), 'a');
  const child = spawn(sshd, ['-D', '-e', '-f', p('sshd_config')], { stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  let exited = null;
  child.on('exit', (code, sig) => (exited = code ?? sig));
  const log = () => fs.readFileSync(p('sshd.log'), 'utf8');
  try {
    await waitFor(async () => exited !== null || (await connects({ host: '127.0.0.1', port })), 15_000, `sshd on 127.0.0.1:${port}`);
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${e.message}\n${log()}`);
  }
  if (exited !== null) throw new Error(`sshd exited (${exited}):\n${log()}`);
  fs.writeFileSync(p('known_hosts'), `[127.0.0.1]:${port} ${fs.readFileSync(p('host_key.pub'), 'utf8').trim()}\n`, { mode: 0o600 });
  fs.writeFileSync(
    p('ssh_config'),
    ['Host *', `  IdentityFile ${p('client_key')}`, '  IdentitiesOnly yes', `  UserKnownHostsFile ${p('known_hosts')}`, '  StrictHostKeyChecking yes', '  BatchMode yes', '  LogLevel ERROR', ''].join('\n'),
    { mode: 0o600 },
  );
  // The docker CLI runs `ssh` from PATH and has no flag for ssh's options: this one reads ours.
  const binDir = p('bin');
  fs.mkdirSync(binDir);
  writeScript(path.join(binDir, 'ssh'), `exec ${shq(ssh)} -F ${shq(p('ssh_config'))} "$@"`);
  return {
    port,
    user,
    pid: child.pid,
    binDir,
    url: `ssh://${user}@127.0.0.1:${port}`,
    log,
    async stop() {
      // Sessions are children of sshd that outlive it when it is killed: their PIDs are in the
      // log (VERBOSE), but every session here ends with its client; the listener is what we own.
      await killPids([child.pid]);
    },
  };
}

// ---- podman system service ------------------------------------------------------------------------

/**
 * `podman system service --time 0 unix://SOCK` over a podmanSandbox (everything private under
 * dir; rootful as root, rootless as a user) with the reference runtime (Debian's runc: these tests
 * check the API peer, not a runtime), `insecure` registries allowed over plain HTTP. Resolves the
 * sandbox plus {sock, host, start(), stop(signal), pid()}.
 */
export async function startPodmanService(dir, { sock = path.join(dir, 'podman.sock'), insecure = [], runtime = which('runc') ?? '/usr/sbin/runc' } = {}) {
  if (!which('podman')) throw new Error(`podman is not installed: ${SETUP_HINT} (apt-get install podman)`);
  const sb = podmanSandbox(dir, { runtime });
  // Rootful podman's default network is a CNI bridge on the host (a link and firewall rules):
  // user-mode networking as rootless podman has, so that the host is left as it was.
  const conf = path.join(dir, 'conf', 'containers.conf');
  fs.writeFileSync(conf, fs.readFileSync(conf, 'utf8').replace('[containers]\n', '[containers]\nnetns = "slirp4netns"\n'));
  fs.writeFileSync(path.join(dir, 'conf', 'registries.conf'), ['unqualified-search-registries = []', ...insecure.flatMap((h) => ['[[registry]]', `location = "${h}"`, 'insecure = true'])].join('\n') + '\n');
  let child = null;
  let exited = null;
  const svc = {
    ...sb,
    sock,
    host: `unix://${sock}`,
    pid: () => child?.pid,
    async start() {
      fs.rmSync(sock, { force: true });
      const logFd = fs.openSync(path.join(dir, 'service.log'), 'a');
      child = spawn('podman', sb.args(['system', 'service', '--time', '0', `unix://${sock}`]), { env: sb.env, stdio: ['ignore', logFd, logFd] });
      fs.closeSync(logFd);
      exited = new Promise((r) => child.once('exit', (code, sig) => r(code ?? sig)));
      const c = child;
      await waitFor(async () => c.exitCode !== null || (fs.existsSync(sock) && (await connects({ path: sock }))), 30_000, `podman system service on ${sock}`);
      if (c.exitCode !== null) throw new Error(`podman system service exited ${c.exitCode}: ${fs.readFileSync(path.join(dir, 'service.log'), 'utf8')}`);
    },
    async stop(signal = 'SIGTERM') {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
    },
    log: () => fs.readFileSync(path.join(dir, 'service.log'), 'utf8'),
    async cleanup() {
      await svc.stop();
      return sb.cleanup();
    },
  };
  await svc.start();
  return svc;
}

export { run };
