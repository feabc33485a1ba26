// Shared bench helpers: hyperfine runs of burrow and its peers side by side, as the
// unprivileged test user (peers are rootless too), and ratio tables.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeBundle } from '../test/harness/bundle.mjs';
import { ensureTestUser } from '../test/harness/test-user.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BURROW = path.join(ROOT, 'bin', 'burrow.js');
/** The user's `burrow` when built: the native launcher (scripts/install.sh links it), which runs Node's CLI for all but a planned run. */
export const LAUNCHER = path.join(ROOT, 'target', 'release', 'burrow');

let user;
/** The user benchmarks run as: the test user when started as root, else ourselves. */
export function benchUser() {
  if (user !== undefined) return user;
  user = process.getuid() === 0 ? ensureTestUser() : null;
  if (user) preparePodman(user);
  return user;
}

/** Rootless podman settings for these machines (bench/peers/README.md). */
function preparePodman(u) {
  const dir = path.join(u.home, '.config', 'containers');
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ['storage.conf', 'containers.conf', 'registries.conf']) {
    fs.copyFileSync(path.join(ROOT, 'bench', 'peers', f), path.join(dir, f));
  }
  execFileSync('chown', ['-R', `${u.uid}:${u.gid}`, path.join(u.home, '.config')]);
}

/** Gives `p` (recursively) to the bench user, whose commands write there; nothing without one. */
export function ownToBenchUser(p) {
  const u = benchUser();
  if (u) execFileSync('chown', ['-R', `${u.uid}:${u.gid}`, p]);
}

/**
 * A new directory `${prefix}XXXXXX` for one bench's files, readable by all and owned by the bench
 * user (the measured commands create their stores and state directories in it).
 */
export function benchDir(prefix) {
  const base = fs.mkdtempSync(prefix);
  fs.chmodSync(base, 0o755);
  const u = benchUser();
  if (u) fs.chownSync(base, u.uid, u.gid);
  return base;
}

/**
 * The rootless busybox bundle the OCI runtimes are compared with: runs `true`, maps container
 * root to `hostUid`/`hostGid` only, says OCI 1.0.2 (crun 1.8 rejects newer versions), then
 * `edit(config)`; owned by the bench user. Returns `dir`.
 */
export function peerBundle(dir, hostUid, hostGid, edit = () => {}) {
  makeBundle(dir, {
    args: ['true'],
    edit: (c) => {
      c.ociVersion = '1.0.2';
      c.linux.uidMappings = [{ containerID: 0, hostID: hostUid, size: 1 }];
      c.linux.gidMappings = [{ containerID: 0, hostID: hostGid, size: 1 }];
      edit(c);
    },
  });
  ownToBenchUser(dir);
  return dir;
}

export function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Prefixes a command so it runs as the bench user with a clean login-like environment. */
export function asUser(argv) {
  const u = benchUser();
  if (!u) return argv;
  return ['runuser', '-u', u.name, '--', 'env', '-i', `PATH=${process.env.PATH}`, `HOME=${u.home}`, `USER=${u.name}`, `XDG_RUNTIME_DIR=${u.runtimeDir}`, ...argv];
}

function quote(a) {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

/**
 * Times each named command (argv arrays) with hyperfine in one run and returns
 * [{ name, median, mean, stddev }] in milliseconds.
 */
export function hyperfine(commands, { runs = 15, warmup = 3, ignoreFailure = false, prefix = [], env = {} } = {}) {
  const out = path.join(os.tmpdir(), `burrow-bench-${process.pid}-${Date.now()}.json`);
  const args = ['-N', '--style', 'basic', '--runs', String(runs), '--warmup', String(warmup), '--export-json', out, ...(ignoreFailure ? ['-i'] : [])];
  for (const c of commands) args.push('--command-name', c.name, c.argv.map(quote).join(' '));
  // A command's `prepare` (argv) runs before each of its timed runs (hyperfine takes one
  // --prepare per command, in order, or none).
  if (commands.some((c) => c.prepare)) for (const c of commands) args.push('--prepare', (c.prepare ?? ['true']).map(quote).join(' '));
  // hyperfine itself runs as the bench user, so that no wrapper is inside the timed commands;
  // `prefix` (e.g. nsenter into a network namespace) goes before that, `env` is added to it.
  const vars = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const argv = [...prefix, ...asUser([...(vars.length ? (benchUser() ? vars : ['env', ...vars]) : []), 'hyperfine', ...args])];
  execFileSync(argv[0], argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit'] });
  const j = JSON.parse(fs.readFileSync(out, 'utf8'));
  fs.rmSync(out, { force: true });
  return j.results.map((r) => {
    const failed = (r.exit_codes ?? []).filter((c) => c !== 0);
    // A failed run is reported in the name: its time means nothing.
    const name = failed.length ? `${r.command} (FAILED ${failed.length}/${r.exit_codes.length} runs, exit ${failed[0]})` : r.command;
    return { name, median: r.median * 1000, mean: r.mean * 1000, stddev: r.stddev * 1000, cpu: (r.user + r.system) * 1000 };
  });
}

/**
 * A markdown table of medians with each row's ratio to the first row (burrow). `cpu`: also the
 * mean CPU time (user + system) and its ratio, which a busy machine inflates far less than the
 * wall-clock time.
 */
export function ratioTable(title, rows, note = '', { cpu = false } = {}) {
  const base = rows[0].median;
  const head = cpu ? ['| command | median (ms) | ± stddev | ratio to burrow | CPU user+sys (ms) | CPU ratio |', '|---|---:|---:|---:|---:|---:|'] : ['| command | median (ms) | ± stddev | ratio to burrow |', '|---|---:|---:|---:|'];
  const lines = [`### ${title}`, '', ...head];
  for (const r of rows) {
    const extra = cpu ? ` ${r.cpu.toFixed(1)} | ${(r.cpu / rows[0].cpu).toFixed(2)}× |` : '';
    lines.push(`| ${r.name} | ${r.median.toFixed(1)} | ${r.stddev.toFixed(1)} | ${(r.median / base).toFixed(2)}× |${extra}`);
  }
  if (note) lines.push('', note);
  return lines.join('\n') + '\n';
}
