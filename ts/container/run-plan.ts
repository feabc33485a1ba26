/**
 * Run plans (docs/run-plans.md §2): what a `burrow run --rm [opts] FILE.sqfs CMD...` computed, written for
 * the native launcher (crates/burrow-runtime/src/bin/burrow.rs) so that the next identical run
 * can start the runtime without starting Node. Everything a run computes (the OCI config, the
 * record, the container's files, the events, the runtime's arguments) is read back or built by
 * the code the run itself uses, with the per-run values (id, name, time, the command, for --hpc
 * the host's environment) left as placeholders; `checks` lists every input the run read, which
 * the launcher compares with its own before it uses the plan. A plan that does not fit costs
 * only speed: the launcher then runs Node, which writes a fresh one.
 *
 * Loaded only by a `run` that may write one (ts/cli/commands/containers.ts), just before its
 * runtime starts; it never fails the run: what goes wrong is said under BURROW_DEBUG.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { EngineContext } from '../engine/context';
import { EVENTS_MAX_BYTES, eventsFile, recordEvent, type EngineEvent, type RecordedEvent } from '../engine/events';
import { PACKAGE_ROOT, defaultRunRoot, runtimeBinary } from '../host/paths';
import { sha256Hex } from '../native';
import { HELD_RUNTIME_ENV } from '../runtime/client';
import { ADJ, NOUN, type ContainerRecord } from './records';
import { selfCommand } from './lifecycle';
import { writeFileAtomic } from '../storage/fsutil';
import { SETTLED_MS } from '../storage/squash';
import { systemdBusPaths } from './cgroup';

export const PLAN_VERSION = 1;

/** The placeholders the launcher fills in (docs/run-plans.md §1, "Placeholders"). */
export const P = {
  id: '@@ID@@',
  id12: '@@ID12@@',
  name: '@@NAME@@',
  created: '@@CREATED@@',
  time: '@@TIME@@',
  timeNano: '@@TIMENANO@@',
  args: '@@ARGS@@',
  hostEnv: '@@HOSTENV@@',
} as const;

/** A command line the launcher takes: `run`, its options as given, the image, the command. */
export interface RunArgv {
  options: string[];
  image: string;
  command: string[];
}

/** Options with a value (the next token, or `--long=V`), as the launcher's grammar has them. */
const VALUED = ['--network', '--net', '-e', '--env', '-w', '--workdir', '-u', '--user'];
const LONG_EQ = ['--network=', '--net=', '--env=', '--workdir=', '--user='];

/**
 * The launcher's splitter (docs/run-plans.md §1, "Grammar"): `argv` is the CLI's arguments (process.argv
 * without node and the script). Undefined for anything the launcher would hand to Node: another
 * command, an option it does not know, a missing value, no --rm, no command, an image that is
 * not a path. (Whether the image is an existing regular file is the caller's to check.)
 */
export function splitRunArgv(argv: readonly string[]): RunArgv | undefined {
  if (argv[0] !== 'run') return undefined;
  const options: string[] = [];
  let i = 1;
  for (; i < argv.length; i++) {
    const t = argv[i]!;
    if (t === '--rm' || t === '--hpc' || LONG_EQ.some((p) => t.startsWith(p))) options.push(t);
    else if (VALUED.includes(t)) {
      if (i + 1 >= argv.length) return undefined;
      options.push(t, argv[++i]!);
    } else if (t.startsWith('-')) return undefined;
    else break;
  }
  const image = argv[i];
  const command = argv.slice(i + 1);
  if (image === undefined || !options.includes('--rm') || command.length === 0) return undefined;
  if (!image.includes('/') && !image.endsWith('.sqfs') && !image.endsWith('.sif')) return undefined;
  return { options, image, command };
}

/** The bytes the key hashes (docs/run-plans.md §1, "Key"). */
export function planKeyText(a: RunArgv, cwd: string, uid: number): string {
  return `burrow-run-plan-1\0${a.options.map((o) => `${o}\0`).join('')}\0${a.image}\0${cwd}\0${uid}\0`;
}

/** The plan's key: sha256 of planKeyText, lowercase hex (the addon's sha256: no node:crypto on `run`). */
export function planKey(a: RunArgv, cwd: string, uid: number): string {
  return sha256Hex(planKeyText(a, cwd, uid));
}

/** Where plans are: the default run root's run-plans/ (never BURROW_RUNROOT's: the checks cover that). */
export function planDir(runRoot = defaultRunRoot()): string {
  return path.join(runRoot, 'run-plans');
}

/**
 * Variables the run path reads, checked by the launcher (null: must be unset), beside every
 * BURROW_* variable (the `BURROW_` prefix: any set one must have the plan's value, any other
 * must be unset). test/unit/run-plan.test.ts audits ts/ for reads of other names.
 */
export const CHECKED_ENV = ['HOME', 'USER', 'LOGNAME', 'PATH', 'XDG_RUNTIME_DIR', 'XDG_DATA_HOME', 'XDG_CONFIG_HOME', 'TMPDIR', 'DBUS_SESSION_BUS_ADDRESS'] as const;

/** Variables read in ts/ but never on the path of a run that writes a plan, and why. */
export const OFF_RUN_PATH_ENV: Readonly<Record<string, string>> = {
  DOCKER_CONFIG: 'registry credentials: pulls and pushes only (a one-file image is never pulled)',
  REGISTRY_AUTH_FILE: 'registry credentials: pulls and pushes only',
  DOCKER_HOST: 'the API client (ts/api/dial.ts), not the CLI run',
  HTTP_PROXY: 'registry transfers only',
  HTTPS_PROXY: 'registry transfers only',
  NO_PROXY: 'registry transfers only',
  http_proxy: 'registry transfers only',
  https_proxy: 'registry transfers only',
  no_proxy: 'registry transfers only',
  SSL_CERT_FILE: 'registry TLS only',
  LISTEN_PID: 'the API service socket activation (ts/api) only',
  LISTEN_FDS: 'the API service socket activation (ts/api) only',
  LISTEN_FDNAMES: 'the API service socket activation (ts/api) only',
  NO_COLOR: '`info` output only',
  TERM: 'pull progress only (ts/image/progress.ts), and a -t run (never planned)',
};

/** The prefix of burrow's own variables: the launcher refuses a plan when one it does not list is set. */
export const ENV_PREFIXES = ['BURROW_'];

/**
 * burrow's variables that change nothing a run computes, which neither the plan nor the launcher
 * compares: BURROW_DEBUG only adds messages (and `info`'s Debug), so that turning it on to see
 * why a plan is missed does not itself make the miss.
 */
export const ENV_EXEMPT = ['BURROW_DEBUG'];

/** One entry of checks.files: a path and what stat(2) (following links) said, or that it was absent. */
export type FileCheck = { path: string; absent: true } | { path: string; dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint };

export function fileCheck(p: string): FileCheck {
  const st = fs.statSync(p, { bigint: true, throwIfNoEntry: false });
  if (!st) return { path: p, absent: true };
  return { path: p, dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

/**
 * fileCheck, or where a directory on the way cannot be searched (EACCES: root's PATH entries
 * seen by another user), a check of the nearest directory that can be stat'ed: its change time
 * moves when its permissions do. (The launcher takes only ENOENT and ENOTDIR as absent.)
 */
export function fileChecks(p: string): FileCheck[] {
  try {
    return [fileCheck(p)];
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') return [{ path: p, absent: true }];
    if (code !== 'EACCES' || path.dirname(p) === p) throw err;
    return fileChecks(path.dirname(p));
  }
}

/** checks.files as JSON: dev, ino and size as JSON integers (exact past 2^53), the times as decimal strings. */
export function fileChecksJson(files: FileCheck[]): string {
  return `[${files
    .map((f) => ('absent' in f ? `{"path":${JSON.stringify(f.path)},"absent":true}` : `{"path":${JSON.stringify(f.path)},"dev":${f.dev},"ino":${f.ino},"size":${f.size},"mtimeNs":"${f.mtimeNs}","ctimeNs":"${f.ctimeNs}"}`))
    .join(',')}]`;
}

/**
 * checks.env: every set BURROW_* variable, the names the run path reads (CHECKED_ENV), the
 * names of bare `-e NAME` (their values go into the container), and `extra` (--hpc's defaults).
 */
export function envChecks(env: Readonly<Record<string, string | undefined>>, envFlags: readonly string[], extra: readonly string[] = []): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && ENV_PREFIXES.some((p) => k.startsWith(p)) && !ENV_EXEMPT.includes(k)) out[k] = v;
  const bare = envFlags.filter((e) => !e.includes('='));
  for (const k of [...CHECKED_ENV, ...bare, ...extra]) out[k] = env[k] ?? null;
  return out;
}

/**
 * A program looked up in PATH as the run looks it up (squashTool, findHelper): every candidate
 * before the one found (absent, or there but not taken), and the one found, so that a program
 * installed earlier in PATH later is a miss.
 */
export function pathLookupChecks(program: string, pathVar: string | undefined, names: readonly string[]): FileCheck[] {
  const out = new Map<string, FileCheck>();
  const dirs = (pathVar ?? '').split(':').filter((x) => path.isAbsolute(x)).concat(['/usr/bin', '/usr/sbin']);
  for (const name of names) {
    for (const d of dirs) {
      const p = path.join(d, name);
      for (const c of fileChecks(p)) out.set(c.path, c);
      if (p === program) return [...out.values()];
    }
  }
  return [...out.values()];
}

/**
 * This process's umask, from /proc/self/status (Linux 4.7 on): process.umask() without an argument
 * is deprecated, as it can only read the mask by setting it. Undefined where the kernel does not
 * say: the plan then has no umask check.
 */
export function processUmask(status?: string): number | undefined {
  let text = status;
  if (text === undefined) {
    try {
      text = fs.readFileSync('/proc/self/status', 'utf8');
    } catch {
      return undefined;
    }
  }
  const m = /^Umask:\s*([0-7]+)$/m.exec(text);
  return m ? parseInt(m[1]!, 8) : undefined;
}

/** Why no plan is written (said under BURROW_DEBUG). */
export class NoPlan extends Error {}

/** A file or directory of the container's directory as the create left it. */
export interface DirEntry {
  path: string;
  mode: number;
}
export interface FileEntry extends DirEntry {
  text: string;
}

/**
 * The container's directory as it is before the runtime starts: its directories (parents first,
 * "" the directory itself) and its files' text. Anything else (a link, a socket, a file of another
 * owner or that is not UTF-8) is a shape the launcher cannot make: no plan.
 */
export function readContainerDir(dir: string, uid = process.getuid?.() ?? 0): { dirs: DirEntry[]; files: FileEntry[] } {
  const dirs: DirEntry[] = [];
  const files: FileEntry[] = [];
  const walk = (rel: string) => {
    const abs = rel ? path.join(dir, rel) : dir;
    const st = fs.lstatSync(abs);
    if (st.uid !== uid) throw new NoPlan(`${rel || 'the container directory'} is owned by uid ${st.uid}`);
    if (st.isDirectory()) {
      dirs.push({ path: rel, mode: st.mode & 0o7777 });
      for (const n of fs.readdirSync(abs).sort()) walk(rel ? `${rel}/${n}` : n);
    } else if (st.isFile()) {
      const buf = fs.readFileSync(abs);
      const text = buf.toString('utf8');
      if (!Buffer.from(text, 'utf8').equals(buf)) throw new NoPlan(`${rel} is not UTF-8 text`);
      files.push({ path: rel, mode: st.mode & 0o7777, text });
    } else throw new NoPlan(`${rel} is neither a file nor a directory`);
  };
  walk('');
  // The record last, as the create writes it: a reader that sees it sees the rest.
  files.sort((a, b) => Number(a.path === 'record.json') - Number(b.path === 'record.json'));
  return { dirs, files };
}

const same = (a: readonly unknown[], b: readonly unknown[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** `list` = entrypoint + command, as [...entrypoint, "@@ARGS@@"]; else no plan. */
function argsTemplate(list: unknown, entrypoint: readonly string[], command: readonly string[], what: string): string[] {
  if (!Array.isArray(list) || !same(list, [...entrypoint, ...command])) throw new NoPlan(`${what} is not the entrypoint followed by the command`);
  return [...entrypoint, P.args];
}

/** --hpc: what the host's environment gave the container, and what the launcher's expansion leaves out. */
export interface HostEnvTemplate {
  /** The host's entries (hpcEnv) as they are in config.json's process.env, in order. */
  entries: string[];
}

/**
 * The container's files with the per-run values as placeholders (docs/run-plans.md §2, "Templates"):
 * record.json and bundle/config.json edited as objects (name, created, the command after the
 * entrypoint, for --hpc the host's variables) and written back in the form they were written in;
 * then the id and its 12-hex prefix in every text. Throws NoPlan for any unexpected shape, and
 * when the name or the creation time is still in a text afterwards.
 */
export function templateFiles(files: readonly FileEntry[], rec: ContainerRecord, command: readonly string[], hostEnv?: HostEnvTemplate): FileEntry[] {
  const entrypoint = rec.config?.entrypoint ?? [];
  const out = files.map((f) => {
    let text = f.text;
    if (f.path === 'record.json') {
      const r = JSON.parse(text) as Record<string, unknown> & { config?: Record<string, unknown> };
      if (`${JSON.stringify(r, null, 2)}\n` !== text) throw new NoPlan('record.json is not in the form records are written in');
      if (r.name !== rec.name || r.created !== rec.created || !r.config) throw new NoPlan('record.json is not the record of this run');
      r.name = P.name;
      r.created = P.created;
      r.command = argsTemplate(r.command, entrypoint, command, 'record.command');
      r.config.cmd = argsTemplate(r.config.cmd, [], command, 'record.config.cmd');
      text = `${JSON.stringify(r, null, 2)}\n`;
    } else if (f.path === 'bundle/config.json') {
      const c = JSON.parse(text) as { process?: { args?: unknown; env?: unknown }; annotations?: Record<string, string> };
      if (JSON.stringify(c) !== text) throw new NoPlan('config.json is not in the form configs are written in');
      if (!c.process || !c.annotations || c.annotations['io.burrow.container.name'] !== rec.name) throw new NoPlan('config.json has no process or no name annotation');
      c.annotations['io.burrow.container.name'] = P.name;
      c.process.args = argsTemplate(c.process.args, entrypoint, command, 'config.json process.args');
      if (hostEnv) c.process.env = hostEnvTemplate(c.process.env, hostEnv.entries);
      text = JSON.stringify(c);
    }
    text = text.split(rec.id).join(P.id).split(rec.id.slice(0, 12)).join(P.id12);
    if (text.includes(rec.name)) throw new NoPlan(`${f.path} has the container's name where no placeholder is`);
    if (text.includes(rec.created)) throw new NoPlan(`${f.path} has the creation time where no placeholder is`);
    return { ...f, text };
  });
  for (const p of ['record.json', 'bundle/config.json']) if (!out.some((f) => f.path === p)) throw new NoPlan(`the container has no ${p}`);
  return out;
}

/** config.json's process.env with the host's entries (one run of them, in order) as one "@@HOSTENV@@". */
export function hostEnvTemplate(env: unknown, entries: readonly string[]): string[] {
  if (!Array.isArray(env) || !env.every((e) => typeof e === 'string')) throw new NoPlan('config.json has no process.env list');
  if (!entries.length) throw new NoPlan('--hpc passed no host variable (no place for the placeholder)');
  const at = env.indexOf(entries[0]!);
  if (at < 0 || !same(env.slice(at, at + entries.length), entries)) throw new NoPlan("the host's variables are not one run in config.json's process.env");
  return [...env.slice(0, at), P.hostEnv, ...env.slice(at + entries.length)];
}

/** An event line as emitEvent writes it (recordEvent), with the time, id and this container's name as placeholders. */
export function eventTemplate(e: EngineEvent, rec: Pick<ContainerRecord, 'id' | 'name'>): string {
  const o = recordEvent({ ...e, Actor: { ...e.Actor, Attributes: { ...e.Actor.Attributes } } }, 0) as unknown as Record<string, unknown>;
  if (e.Type === 'container' && e.Actor.Attributes.name === rec.name) (o.Actor as RecordedEvent['Actor']).Attributes.name = P.name;
  o.time = P.time;
  o.timeNano = P.timeNano;
  const text = JSON.stringify(o).replace(`"${P.time}"`, P.time).replace(`"${P.timeNano}"`, P.timeNano);
  return text.split(rec.id).join(P.id).split(rec.id.slice(0, 12)).join(P.id12);
}

/** A text of the run (an argument, a variable) with the id as placeholders. */
const withId = (rec: ContainerRecord, s: string) => s.split(rec.id).join(P.id).split(rec.id.slice(0, 12)).join(P.id12);

/** What the CLI's run hands over just before its runtime starts. */
export interface PlanInput {
  ctx: Pick<EngineContext, 'store' | 'runRoot' | 'globalArgs'>;
  rec: ContainerRecord;
  /** The command as commander gave it. */
  command: string[];
  flags: { env?: string[]; hpc?: boolean };
  /** The runtime's arguments exactly as runHeld passes them (lifecycle.ts heldRunArgs). */
  runtimeArgs: string[];
  /** The events this run logged so far (engine/events.ts tapEvents). */
  events: RecordedEvent[];
  /** Whether the run printed a warning (which the launcher would not). */
  warned: boolean;
  /** The `destroy` event the run logs after the container's removal. */
  destroy: EngineEvent;
  /** process.argv without node and the script; process.cwd(); the uid. Given by tests. */
  argv?: string[];
  cwd?: string;
  env?: Record<string, string | undefined>;
}

/** Why a run gets no plan, or undefined when it may have one (docs/run-plans.md §2, "When"). */
export function ineligible(rec: ContainerRecord, split: RunArgv | undefined, command: readonly string[], config: { annotations?: Record<string, string> }, hpc: boolean): string | undefined {
  if (!split) return 'the command line is not one the launcher reads (run, its known options, --rm, a path, a command)';
  if (!same(split.command, command)) return 'the command line and the parsed command differ';
  if (!rec.autoRemove) return 'no --rm';
  if (rec.tty || rec.interactive) return 'a terminal or -i';
  const mode = rec.net?.mode ?? rec.network;
  if (mode !== 'none' && mode !== 'host') return `network ${mode} (only none and host are planned)`;
  if (rec.net?.ports.length) return 'published ports';
  if (rec.restartPolicy && rec.restartPolicy.name !== 'no') return 'a restart policy';
  if (rec.healthcheck && rec.healthcheck.Test[0] !== 'NONE' && rec.healthcheck.Test.length) return 'a healthcheck';
  const file = config.annotations?.['run.burrow.rootfs.squashfuse'];
  if (!file || file !== path.resolve(split.image)) return 'not a one-file image given by its path';
  if (rec.mounts.some((m) => !(hpc && m.type === 'bind' && m.source === m.destination))) return 'volumes';
  return undefined;
}

function debug(msg: string): void {
  if (process.env.BURROW_DEBUG) process.stderr.write(`burrow: debug: run plan: ${msg}\n`);
}

/** Writes the run's plan; never throws (BURROW_DEBUG says why none was written). */
export async function writeRunPlan(input: PlanInput): Promise<void> {
  try {
    const file = await buildAndWrite(input);
    if (file) debug(`written ${file}`);
  } catch (err) {
    debug(`not written: ${err instanceof NoPlan ? err.message : (err as Error).message}`);
  }
}

async function buildAndWrite(input: PlanInput): Promise<string | undefined> {
  const env = input.env ?? process.env;
  if (env.BURROW_NO_PLAN) return undefined;
  const { ctx, rec } = input;
  const hpc = !!input.flags.hpc;
  const argv = input.argv ?? process.argv.slice(2);
  const cwd = input.cwd ?? process.cwd();
  const uid = process.getuid?.() ?? 0;
  const split = splitRunArgv(argv);
  const dir = ctx.store.p('containers', rec.id);
  const read = readContainerDir(dir, uid);
  const configText = read.files.find((f) => f.path === 'bundle/config.json')?.text;
  if (configText === undefined) throw new NoPlan('the container has no config.json');
  const config = JSON.parse(configText) as { annotations?: Record<string, string>; process?: { env?: string[] } };
  const why = ineligible(rec, split, input.command, config, hpc);
  if (why) throw new NoPlan(why);
  if (input.warned) throw new NoPlan('the run printed a warning');
  const image = path.resolve(split!.image);
  if (!fs.statSync(image).isFile()) throw new NoPlan('the image is not a regular file');

  // --hpc: the host's variables (hpcEnv, as the create passed them) become "@@HOSTENV@@".
  let hostEnv: { deny: string[]; denyPrefix: string; imageKeys: string[] } | null = null;
  let hostEntries: HostEnvTemplate | undefined;
  let hpcNames: string[] = [];
  let hostname: string | null = null;
  if (hpc) {
    const { hpcEnv, HPC_ENV_DENY, HPC_ENV_DENY_PREFIX, HPC_ENV_DEFAULTS } = await import('./hpc');
    const { openFileImage } = await import('../storage/squash');
    const img = await openFileImage(image, { keepIn: ctx.store.p('file-images') });
    const imageKeys = (img.config.config?.Env ?? []).map((kv) => kv.slice(0, kv.indexOf('=')));
    const own = (input.flags.env ?? []).map((e) => (e.includes('=') ? e.slice(0, e.indexOf('=')) : e));
    const entries = hpcEnv(env, imageKeys.map((k) => `${k}=`));
    // A -e of a host variable would sit in the host's run: the launcher cannot keep that order.
    if (entries.some((kv) => own.includes(kv.slice(0, kv.indexOf('='))))) throw new NoPlan('-e sets a variable the host passes too');
    hostEntries = { entries };
    hostEnv = { deny: [...HPC_ENV_DENY], denyPrefix: HPC_ENV_DENY_PREFIX, imageKeys: [...imageKeys, ...own] };
    hpcNames = Object.keys(HPC_ENV_DEFAULTS);
    hostname = (await import('node:os')).hostname();
  }

  const files = templateFiles(read.files, rec, input.command, hostEntries);
  const runtimePath = runtimeBinary();
  const program = config.annotations?.['run.burrow.rootfs.squashfuse.program'];
  if (!program) throw new NoPlan('no squashfuse program in config.json');
  const { configFile } = await import('../config/config');
  const kept = path.join(ctx.store.p('file-images'), `${sha256Hex(image)}.json`);
  const checks = [
    image,
    kept,
    configFile(env),
    ctx.store.p('storage.json'),
    '/etc/subuid',
    '/etc/subgid',
    '/etc/passwd',
    '/etc/group',
    // How user and group names are looked up (the store's settings ask for this user's).
    '/etc/nsswitch.conf',
    '/etc/resolv.conf',
    '/run/systemd/resolve/resolv.conf',
    '/etc/hosts',
    '/dev/fuse',
    // cgroupPlacement: whether systemd is reachable (the container's cgroupsPath).
    '/run/systemd/system',
    '/run/systemd/private',
    '/run/dbus/system_bus_socket',
    path.join(PACKAGE_ROOT, 'dist', 'bundle', 'manifest.json'),
    path.join(PACKAGE_ROOT, 'dist', 'bundle', 'burrow.js'),
    (await import('../native')).addonPath(),
    runtimePath,
  ].flatMap(fileChecks);
  checks.push(...pathLookupChecks(program, env.PATH, ['squashfuse_ll', 'squashfuse']));
  // cgroupPlacement on pure cgroup v2: whether this user's systemd manager answers on its bus.
  checks.push(...systemdBusPaths(env).flatMap(fileChecks));
  // A file changed within the last SETTLED_MS may change again within the same tick of its file
  // system's clock (coarse on some NFS servers) and keep its times: its check could not tell.
  // As for what the store keeps read from an image file (ts/storage/squash.ts). Not that kept
  // entry itself, which this run may just have written: burrow replaces it whole (a new inode).
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  const fresh = checks.find((c) => !('absent' in c) && c.path !== kept && nowNs - (c.ctimeNs > c.mtimeNs ? c.ctimeNs : c.mtimeNs) < BigInt(SETTLED_MS) * 1_000_000n);
  if (fresh) throw new NoPlan(`${fresh.path} changed less than ${SETTLED_MS / 1000} s ago`);
  const key = planKey(split!, cwd, uid);
  // The modes of the container's files are those this mask gave: another mask, other modes.
  const umask = processUmask();
  const groups = [...new Set(process.getgroups?.() ?? [])].sort((a, b) => a - b);
  const plan = {
    version: PLAN_VERSION,
    key,
    checks: {
      uid,
      gid: process.getgid?.() ?? 0,
      groups,
      cwd,
      hostname,
      ...(umask !== undefined ? { umask } : {}),
      env: envChecks(env, input.flags.env ?? [], hpcNames),
      envPrefixes: ENV_PREFIXES,
      envExempt: ENV_EXEMPT,
      files: '@@FILES@@',
    },
    containersDir: ctx.store.p('containers'),
    runtimeRoot: rec.runtimeRoot,
    eventsFile: eventsFile(ctx),
    eventsMaxBytes: EVENTS_MAX_BYTES,
    names: { adjectives: ADJ, nouns: NOUN },
    dirs: read.dirs,
    files,
    eventsBefore: input.events.map((e) => eventTemplate(e, rec)),
    eventsAfter: [eventTemplate(input.destroy, rec)],
    runtime: { path: runtimePath, args: input.runtimeArgs.map((a) => withId(rec, a)), env: Object.entries(HELD_RUNTIME_ENV).map(([k, v]) => `${k}=${v}`), stdin: 'null' },
    cleanupCommand: selfCommand(ctx.globalArgs, 'rm', '-f', rec.id).map((a) => withId(rec, a)),
    hostEnv,
  };
  const text = JSON.stringify(plan).replace('"@@FILES@@"', () => fileChecksJson(checks));
  const where = planDir();
  fs.mkdirSync(where, { recursive: true, mode: 0o700 });
  const st = fs.statSync(where);
  if (st.uid !== uid || (st.mode & 0o077) !== 0) throw new NoPlan(`${where} is not this user's alone`);
  const file = path.join(where, `${key}.json`);
  writeFileAtomic(file, text, 0o600, { durable: false });
  return file;
}
