/**
 * `burrow build` (and `burrow image build`): flags to a BuildRequest, the build's events to
 * text (podman's `STEP N/M: INSTRUCTION`, `--> Using cache`, RUN output as it comes) on stderr,
 * the image id on stdout (only it with -q). The context may be a directory, `-` (a Dockerfile or
 * a tar on stdin) or the URL of a tar, unpacked into a temporary directory first.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Command } from 'commander';
import { BurrowError } from '../../errors';
import type { BuildEvent, BuildOutput, BuildRequest, BuildSecret } from '../../engine/build';
import type { EngineContext } from '../../engine/context';
import { context } from '../context';

export interface BuildFlags {
  tag: string[];
  file?: string;
  buildArg: string[];
  target?: string;
  cache: boolean;
  pull?: boolean | string;
  platform?: string;
  label: string[];
  iidfile?: string;
  quiet?: boolean;
  progress: string;
  secret: string[];
  network: string;
  output: string[];
}

function usage(msg: string, fix?: string): BurrowError {
  return new BurrowError('EUSAGE', msg, fix);
}

function keyValues(list: string[], flag: string, fromEnv: boolean): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    const k = i < 0 ? kv : kv.slice(0, i);
    if (!k) throw new BurrowError('EBUILD_INPUT', `invalid ${flag} ${kv}: want KEY=VALUE`);
    if (i < 0) {
      // Docker: `--build-arg NAME` takes NAME from the environment (left out when unset).
      if (fromEnv && process.env[k] !== undefined) out[k] = process.env[k]!;
      else if (!fromEnv) out[k] = '';
      continue;
    }
    out[k] = kv.slice(i + 1);
  }
  return out;
}

function csv(s: string, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of s.split(',')) {
    const i = part.indexOf('=');
    if (i < 0) throw usage(`invalid ${flag} ${s}: want KEY=VALUE[,KEY=VALUE]`);
    out[part.slice(0, i)] = part.slice(i + 1);
  }
  return out;
}

function parseSecret(s: string): BuildSecret {
  const o = csv(s, '--secret');
  if (!o.id) throw usage(`invalid --secret ${s}: an id= is required`);
  const src = o.src ?? o.source;
  return { id: o.id, ...(src ? { src } : {}), ...(o.env ? { env: o.env } : {}), ...(!src && !o.env ? { src: o.id } : {}) };
}

function parseOutput(s: string): BuildOutput {
  const o = s.includes('=') ? csv(s, '--output') : { type: 'local', dest: s };
  const type = o.type ?? 'local';
  if (type === 'image' || type === 'registry') return { type: 'image' };
  if (!['oci', 'docker', 'tar', 'local'].includes(type)) throw usage(`invalid --output type=${type}: want oci, docker, tar, local or image`);
  if (!o.dest) throw usage(`--output type=${type} needs dest=PATH`);
  return { type: type as 'oci' | 'docker' | 'tar' | 'local', dest: o.dest };
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The context as a directory, and what to remove afterwards (a tar's tree, ts/build/context-tar.ts). */
async function contextDir(arg: string, flags: BuildFlags, req: Partial<BuildRequest>, ctx: EngineContext): Promise<{ dir: string; cleanup?: () => Promise<void> }> {
  if (arg === '-' || /^https?:\/\//i.test(arg)) {
    let bytes: Buffer;
    if (arg === '-') bytes = await readStdin();
    else {
      const res = await fetch(arg).catch((e: Error) => {
        throw new BurrowError('EBUILD_INPUT', `cannot fetch the build context ${arg}: ${e.message}`);
      });
      if (!res.ok) throw new BurrowError('EBUILD_INPUT', `cannot fetch the build context ${arg}: ${res.status} ${res.statusText}`);
      bytes = Buffer.from(await res.arrayBuffer());
    }
    const { archiveKind } = await import('../../image/tar');
    const kind = archiveKind(bytes.subarray(0, 512));
    if (kind === 'tar' || kind === 'gzip') {
      const [{ extractContextTar }, { Readable }] = await Promise.all([import('../../build/context-tar'), import('node:stream')]);
      return extractContextTar(ctx.store, await ctx.settings(), Readable.from([bytes]));
    }
    if (arg !== '-') throw new BurrowError('EBUILD_INPUT', `the build context ${arg} is not a tar archive`);
    // A Dockerfile alone: an empty context.
    req.dockerfile = { text: bytes.toString('utf8') };
    const temp = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-build-ctx-'));
    return { dir: temp, cleanup: () => Promise.resolve(fs.rmSync(temp, { recursive: true, force: true })) };
  }
  if (flags.file === '-') req.dockerfile = { text: (await readStdin()).toString('utf8') };
  return { dir: path.resolve(arg) };
}

export async function buildCommand(ctxArg: string, flags: BuildFlags, cmd: Command): Promise<number> {
  const req: Partial<BuildRequest> = {};
  const network = flags.network;
  if (!['default', 'none', 'host'].includes(network)) throw usage(`invalid --network ${network}: a build takes default, none or host`);
  const progress = flags.progress;
  if (!['auto', 'plain', 'tty', 'quiet'].includes(progress)) throw usage(`invalid --progress ${progress}: want auto, plain or tty`);
  const buildArgs = keyValues(flags.buildArg, '--build-arg', true);
  const labels = keyValues(flags.label, '--label', false);
  const secrets = flags.secret.map(parseSecret);
  const outputs = flags.output.map(parseOutput);
  const pull = flags.pull === undefined || flags.pull === false ? 'missing' : flags.pull === true || flags.pull === 'true' || flags.pull === 'always' ? 'always' : flags.pull === 'never' || flags.pull === 'false' ? (flags.pull === 'false' ? 'missing' : 'never') : 'missing';
  const ctx = context(cmd);
  const { dir, cleanup } = await contextDir(ctxArg, flags, req, ctx);
  if (flags.file && flags.file !== '-') req.dockerfile = { path: path.isAbsolute(flags.file) ? flags.file : path.resolve(flags.file) };
  const request: BuildRequest = {
    contextDir: dir,
    ...(req.dockerfile ? { dockerfile: req.dockerfile } : {}),
    tags: flags.tag,
    buildArgs,
    ...(flags.target ? { target: flags.target } : {}),
    noCache: !flags.cache,
    pull,
    ...(flags.platform ? { platform: flags.platform } : {}),
    labels,
    secrets,
    network: network as BuildRequest['network'],
    outputs,
  };
  const quiet = !!flags.quiet || progress === 'quiet';
  const err = process.stderr;
  // Output of a RUN step ends in a newline before the next line of ours.
  let atLineStart = true;
  const say = (s: string) => {
    if (quiet) return;
    err.write(`${atLineStart ? '' : '\n'}${s}\n`);
    atLineStart = true;
  };
  const onEvent = (e: BuildEvent) => {
    if (e.type === 'step') say(`STEP ${e.index}/${e.total}: ${e.instruction.split('\n')[0]}`);
    else if (e.type === 'cached') say('--> Using cache');
    else if (e.type === 'pull') say(`Resolving "${e.image}": ${e.message}`);
    else if (e.type === 'output' && !quiet) {
      err.write(e.data);
      atLineStart = e.data.length === 0 || e.data[e.data.length - 1] === 0x0a;
    }
  };
  const abort = new AbortController();
  const stop = () => abort.abort();
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    const { build } = await import('../../engine/build');
    const r = await build(ctx, request, { event: onEvent, warn: (m) => err.write(`WARNING: ${m}\n`) }, abort.signal);
    if (r.imageId) {
      for (const t of r.tags) say(`Successfully tagged ${t}`);
      if (flags.iidfile) fs.writeFileSync(flags.iidfile, r.imageId);
      // Not when an --output goes to stdout: the id would corrupt it.
      if (!outputs.some((o) => o.type !== 'image' && o.dest === '-')) process.stdout.write(`${r.imageId.replace(/^sha256:/, '')}\n`);
    }
    return 0;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await cleanup?.();
  }
}

