/**
 * The build executor: walks the stages the target needs (the others are skipped), independent
 * stages in parallel, each step either a cache hit (ts/build/cache.ts) or run: RUN in a
 * container (run.ts), COPY/ADD as a layer packed straight from its sources (copy.ts), the
 * config instructions on the config with a history entry (`empty_layer`), as Docker writes
 * them. The result is an image of the store (state.ts) and the outputs asked for.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import type { BuildEvent, BuildHooks, BuildReport, BuildRequest } from '../engine/build';
import type { EngineContext } from '../engine/context';
import type { ImageRecord, StorageSettings } from '../storage/store';
import { hostPlatform, formatPlatform } from '../image/manifest';
import type { CommandForm, Dockerfile, Instruction, Stage } from './dockerfile/ast';
import { cacheGet, cacheKey, cachePut } from './cache';
import { matchSources, type BuildContext } from './context';
import { copyStep, resolveChown } from './copy';
import { expand, expandHeredoc, expandList, ignoreFn, parse, parseTriggers, type Vars } from './frontend';
import { cloneState, commitImage, imageState, record, scratchConfig, adoptLayer, type BuildState } from './state';

/**
 * A RUN whose command exited non-zero: the command and its status, so that a front end can say
 * it in its own words (the Engine API in dockerd's: "The command '…' returned a non-zero code: N").
 */
export class BuildStepError extends BurrowError {
  constructor(
    message: string,
    readonly command: string[],
    readonly status: number,
  ) {
    super('EBUILD_STEP', message);
  }
}

/** Args every build knows without an ARG (BuildKit's predefined and proxy args). */
const PROXY_ARGS = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy'];

function inputError(msg: string, fix?: string): BurrowError {
  return new BurrowError('EBUILD_INPUT', msg, fix);
}

/** TARGETPLATFORM, TARGETOS, … BUILDPLATFORM, … as BuildKit defines them. */
function platformArgs(platform: string | undefined): Vars {
  const build = hostPlatform();
  const target = platform ? (() => {
    const [os = 'linux', architecture = build.architecture, variant] = platform.split('/');
    return { os, architecture, ...(variant ? { variant } : {}) };
  })() : build;
  return {
    TARGETPLATFORM: formatPlatform(target),
    TARGETOS: target.os,
    TARGETARCH: target.architecture,
    TARGETVARIANT: target.variant ?? '',
    BUILDPLATFORM: formatPlatform(build),
    BUILDOS: build.os,
    BUILDARCH: build.architecture,
    BUILDVARIANT: build.variant ?? '',
  };
}

/** Reads the Dockerfile the request names (default: Dockerfile, then Containerfile, in the context). */
function readDockerfile(req: BuildRequest): { text: string; file: string; ignoreBeside?: string } {
  if (req.dockerfile?.text !== undefined) return { text: req.dockerfile.text, file: 'Dockerfile' };
  const candidates = req.dockerfile?.path ? [path.resolve(req.contextDir, req.dockerfile.path)] : ['Dockerfile', 'Containerfile'].map((n) => path.join(req.contextDir, n));
  for (const f of candidates) {
    try {
      return { text: fs.readFileSync(f, 'utf8'), file: f, ...(req.dockerfile?.path ? { ignoreBeside: `${f}.dockerignore` } : {}) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw inputError(`cannot read ${f}: ${(err as Error).message}`);
    }
  }
  throw inputError(`no Dockerfile: ${candidates.join(' nor ')} exists`, 'name one with -f FILE, or give the directory that holds it as the context');
}

/** `.dockerignore` (or `Dockerfile.dockerignore` beside a named Dockerfile, or `.containerignore`). */
function readIgnore(contextDir: string, beside: string | undefined): string | undefined {
  for (const f of [beside, path.join(contextDir, '.dockerignore'), path.join(contextDir, '.containerignore')]) {
    if (!f) continue;
    try {
      return fs.readFileSync(f, 'utf8');
    } catch {
      /* next */
    }
  }
  return undefined;
}

const NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

interface StageRun {
  stage: Stage;
  promise?: Promise<BuildState>;
}

/** `RUN`, `CMD`, `ENTRYPOINT` in shell form run through the stage's SHELL. */
function argvOf(cmd: CommandForm, shell: string[]): string[] {
  if (cmd.form === 'exec') return cmd.argv;
  let script = cmd.command;
  if (cmd.heredocs.length) {
    // `RUN <<EOF` alone runs the body as the script; `RUN python3 <<EOF` gives the shell the
    // heredoc to feed, as BuildKit does.
    if (/^\s*\d?<<-?['"]?[A-Za-z0-9_]+['"]?\s*$/.test(script) && cmd.heredocs.length === 1) script = cmd.heredocs[0]!.content;
    else script = `${script}\n${cmd.heredocs.map((h) => `${h.content}${h.name}\n`).join('')}`;
  }
  return [...shell, script];
}

function durationNs(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  let total = 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|\u00b5s|ms|s|m|h)/g;
  let m: RegExpExecArray | null;
  let seen = '';
  while ((m = re.exec(s))) {
    seen += m[0];
    total += Number(m[1]) * ({ ns: 1, us: 1e3, '\u00b5s': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 } as Record<string, number>)[m[2]!]!;
  }
  if (seen !== s) throw inputError(`invalid duration ${s}: want e.g. 30s, 1m30s`);
  return Math.round(total);
}

export async function runBuild(ctx: EngineContext, req: BuildRequest, hooks: BuildHooks = {}, outer?: AbortSignal): Promise<BuildReport> {
  // ---- everything that can be checked before any work ----
  for (const k of Object.keys(req.buildArgs)) if (!NAME.test(k)) throw inputError(`invalid --build-arg ${k}: want NAME=VALUE with NAME a letter or _ then letters, digits or _`);
  if (!fs.statSync(req.contextDir, { throwIfNoEntry: false })?.isDirectory()) throw inputError(`build context ${req.contextDir} is not a directory`);
  const df = readDockerfile(req);
  const dockerfile: Dockerfile = parse(df.text, df.file);
  const escape = dockerfile.directives.escape;
  const bctx: BuildContext = { dir: fs.realpathSync(req.contextDir), ignored: ignoreFn(readIgnore(req.contextDir, df.ignoreBeside)) };
  if (!dockerfile.stages.length) throw new BurrowError('EBUILD_PARSE', `${df.file}: no FROM instruction: a Dockerfile must start with FROM (after ARGs and parser directives)`);
  const predefined: Vars = { ...platformArgs(req.platform) };
  for (const p of PROXY_ARGS) if (req.buildArgs[p] !== undefined) predefined[p] = req.buildArgs[p]!;
  // Global ARGs: usable in FROM lines, and inside a stage once redeclared by a bare ARG.
  const globals: Vars = { ...predefined };
  const declaredGlobal: Vars = {};
  for (const a of dockerfile.globalArgs) for (const { name, default: def } of a.args) {
    const v = req.buildArgs[name] ?? (def !== undefined ? expand(def, globals, escape) : undefined);
    if (v !== undefined) {
      globals[name] = v;
      declaredGlobal[name] = v;
    }
  }
  const stages: StageRun[] = dockerfile.stages.map((stage) => ({ stage }));
  const byName = (ref: string): StageRun | undefined => {
    const r = ref.toLowerCase();
    const named = stages.find((s) => s.stage.name === r);
    if (named) return named;
    return /^\d+$/.test(r) && Number(r) < stages.length ? stages[Number(r)] : undefined;
  };
  const target = req.target ? byName(req.target) : stages[stages.length - 1];
  if (!target) {
    throw inputError(`target stage "${req.target}" could not be found`, `the stages are: ${stages.map((s) => s.stage.name ?? String(s.stage.index)).join(', ')}`);
  }
  // The stages the target needs: FROM an earlier stage, COPY --from, RUN --mount from=.
  const deps = (s: Stage): StageRun[] => {
    const out: StageRun[] = [];
    const fromImage = expand(s.from.image, globals, escape);
    const f = byName(fromImage);
    if (f && f.stage.index < s.index) out.push(f);
    const refs = (ins: Instruction): string[] => {
      if (ins.kind === 'COPY' || ins.kind === 'ADD') return ins.from ? [ins.from] : [];
      if (ins.kind === 'RUN') return ins.mounts.map((m) => m.from).filter((x): x is string => !!x);
      if (ins.kind === 'ONBUILD') return [];
      return [];
    };
    for (const ins of s.instructions) for (const r of refs(ins)) {
      const d = byName(expand(r, globals, escape));
      if (d && d !== stages[s.index]) out.push(d);
    }
    return out;
  };
  const needed = new Set<StageRun>();
  const visiting = new Set<StageRun>();
  const visit = (s: StageRun) => {
    if (needed.has(s)) return;
    if (visiting.has(s)) throw inputError(`stage ${s.stage.name ?? s.stage.index} depends on itself (a cycle of COPY --from / FROM)`);
    visiting.add(s);
    for (const d of deps(s.stage)) visit(d);
    visiting.delete(s);
    needed.add(s);
  };
  visit(target);
  // Step numbers across the needed stages, in file order (podman's STEP N/M).
  const ordered = stages.filter((s) => needed.has(s));
  // COPY/ADD sources that need no variable: missing or outside the context fails now.
  for (const s of ordered) {
    for (const ins of s.stage.instructions) {
      if ((ins.kind !== 'COPY' && ins.kind !== 'ADD') || ins.from) continue;
      for (const src of ins.sources) if (!src.includes('$') && !/^https?:\/\//i.test(src)) matchSources(bctx, src);
    }
  }
  const total = ordered.reduce((n, s) => n + 1 + s.stage.instructions.length, 0);
  const firstStep = new Map<StageRun, number>();
  {
    let n = 1;
    for (const s of ordered) {
      firstStep.set(s, n);
      n += 1 + s.stage.instructions.length;
    }
  }

  const settings = await ctx.settings();
  const store = ctx.store;
  store.init();
  const abort = new AbortController();
  const onOuter = () => abort.abort();
  if (outer?.aborted) abort.abort();
  outer?.addEventListener('abort', onOuter, { once: true });
  const signal = abort.signal;
  const tmpDir = fs.mkdtempSync(path.join(store.p('tmp'), `build-${process.pid}-`));
  const emit = (e: BuildEvent) => hooks.event?.(e);
  const warn = (m: string) => hooks.warn?.(m);
  let steps = 0;
  let cached = 0;

  const pullImage = async (ref: string): Promise<ImageRecord> => {
    const { findImage } = await import('../image/resolve');
    const img = req.pull === 'always' ? undefined : findImage(store, ref);
    if (img) return img;
    if (req.pull === 'never') throw inputError(`no such image: ${ref}`, `pull it first: burrow pull ${ref}`);
    emit({ type: 'pull', image: ref, message: `pulling ${ref}` });
    const { pullImage: pull } = await import('../engine/images');
    const r = await pull(ctx, { reference: ref, ...(req.platform ? { platform: req.platform } : {}), signal });
    return store.image(r.id)!;
  };

  /** A RUN heredoc's program as an executable file, bound into the step's container. */
  const scriptFile = (body: string): string => {
    const f = path.join(tmpDir, `heredoc-${Math.random().toString(16).slice(2)}`);
    fs.writeFileSync(f, body, { mode: 0o755 });
    return f;
  };

  const stateName = (s: StageRun) => s.stage.name ?? String(s.stage.index);

  const buildStage = (sr: StageRun): Promise<BuildState> => {
    sr.promise ??= runStage(sr);
    return sr.promise;
  };

  /** The state a `--from=X` names: a stage (built if needed) or an image. */
  const fromSource = async (ref: string): Promise<BuildState> => {
    const s = byName(ref);
    if (s) return buildStage(s);
    const img = await pullImage(ref);
    return imageState(store, img, cacheKey('image', img.id));
  };

  async function runStage(sr: StageRun): Promise<BuildState> {
    const stage = sr.stage;
    const name = stateName(sr);
    let index = firstStep.get(sr)!;
    const step = async <T>(ins: { original: string }, fn: () => Promise<T>): Promise<T> => {
      if (signal.aborted) throw new BurrowError('EBUILD_STEP', 'the build was interrupted');
      emit({ type: 'step', stage: name, index, total, instruction: ins.original });
      const t0 = Date.now();
      const r = await fn();
      emit({ type: 'done', stage: name, index, seconds: (Date.now() - t0) / 1000 });
      index++;
      steps++;
      return r;
    };
    // ---- FROM ----
    let state = await step(stage.from, async () => {
      const ref = expand(stage.from.image, globals, escape);
      if (stage.from.platform) {
        const p = expand(stage.from.platform, globals, escape);
        if (p !== formatPlatform(hostPlatform()) && p !== req.platform) warn(`FROM --platform=${p}: only this host's platform (${formatPlatform(hostPlatform())}) can run RUN steps here`);
      }
      const s = byName(ref);
      if (s && s.stage.index < stage.index) return cloneState(await buildStage(s));
      if (ref.toLowerCase() === 'scratch') return { config: scratchConfig(req.platform), layers: [], key: cacheKey('scratch', req.platform ?? '') };
      const img = await pullImage(ref);
      return imageState(store, img, cacheKey('image', img.id));
    });
    // Args in this stage's scope: those its ARGs declare (a global or predefined one only once
    // redeclared, as in Docker); the proxy args reach RUN without one.
    const args: Vars = {};
    const proxies = Object.fromEntries(PROXY_ARGS.filter((p) => req.buildArgs[p] !== undefined).map((p) => [p, req.buildArgs[p]!]));
    const env = (): Vars => {
      const v: Vars = { ...args };
      for (const e of state.config.config.Env ?? []) {
        const i = e.indexOf('=');
        if (i > 0) v[e.slice(0, i)] = e.slice(i + 1);
      }
      return v;
    };
    const x = (w: string) => expand(w, env(), escape);
    let cmdSetHere = false;
    const shell = () => state.config.config.Shell ?? ['/bin/sh', '-c'];
    const usedArgs = (): string[] => Object.entries(args).map(([k, v]) => `${k}=${v}`).sort();

    /** One cached step: a hit reuses the result; a miss runs `fn` on a copy and saves it. */
    const cachedStep = async (key: string, fn: (s: BuildState) => void | Promise<void>): Promise<void> => {
      const hit = req.noCache ? undefined : cacheGet(store, key);
      if (hit) {
        emit({ type: 'cached', stage: name, index });
        cached++;
        state = hit;
        return;
      }
      const next = cloneState(state);
      await fn(next);
      next.key = key;
      cachePut(store, next);
      state = next;
    };

    const execute = async (ins: Instruction): Promise<void> => {
      switch (ins.kind) {
        case 'ARG':
          for (const { name: n, default: def } of ins.args) {
            const v = req.buildArgs[n] ?? (def !== undefined ? x(def) : (declaredGlobal[n] ?? predefined[n]));
            if (v !== undefined) args[n] = v;
          }
          {
            // BuildKit's history entry: the names and defaults as declared.
            const text = `ARG ${ins.args.map((a) => (a.default !== undefined ? `${a.name}=${x(a.default)}` : a.name)).join(' ')}`;
            return cachedStep(cacheKey(state.key, text, usedArgs()), (s) => record(s, text));
          }
        case 'ENV': {
          const pairs = ins.pairs.map(([k, v]) => [x(k), x(v)] as const);
          const text = `ENV ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`;
          return cachedStep(cacheKey(state.key, text), (s) => {
            const list = s.config.config.Env ?? [];
            for (const [k, v] of pairs) {
              const i = list.findIndex((e) => e.startsWith(`${k}=`));
              if (i >= 0) list[i] = `${k}=${v}`;
              else list.push(`${k}=${v}`);
            }
            s.config.config.Env = list;
            record(s, text);
          });
        }
        case 'LABEL': {
          const pairs = ins.pairs.map(([k, v]) => [x(k), x(v)] as const);
          const text = `LABEL ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`;
          return cachedStep(cacheKey(state.key, text), (s) => {
            s.config.config.Labels = { ...(s.config.config.Labels ?? {}), ...Object.fromEntries(pairs) };
            record(s, text);
          });
        }
        case 'MAINTAINER': {
          const v = x(ins.value);
          return cachedStep(cacheKey(state.key, 'MAINTAINER', v), (s) => {
            s.config.author = v;
            record(s, `MAINTAINER ${v}`);
          });
        }
        case 'USER': {
          const v = x(ins.value);
          return cachedStep(cacheKey(state.key, 'USER', v), (s) => {
            s.config.config.User = v;
            record(s, `USER ${v}`);
          });
        }
        case 'STOPSIGNAL': {
          const v = x(ins.value);
          return cachedStep(cacheKey(state.key, 'STOPSIGNAL', v), (s) => {
            s.config.config.StopSignal = v;
            record(s, `STOPSIGNAL ${v}`);
          });
        }
        case 'WORKDIR': {
          const v = x(ins.value);
          const dir = path.posix.resolve(state.config.config.WorkingDir || '/', v);
          return cachedStep(cacheKey(state.key, 'WORKDIR', dir, state.config.config.User ?? ''), async (s) => {
            s.config.config.WorkingDir = dir;
            // BuildKit makes the directory (owned by the stage's USER): a layer only when new.
            const dirs = [...s.layers].reverse().map((l) => store.layerDir(l.diffId));
            if (dirs.some((d) => fs.existsSync(path.join(d, dir)))) return record(s, `WORKDIR ${dir}`);
            const { mkdirLayer } = await import('./copy');
            const owner = s.config.config.User ? resolveChown(s.config.config.User, dirs) : undefined;
            const layer = await mkdirLayer(store, settings, dir, owner, tmpDir, signal);
            record(s, `WORKDIR ${dir}`, layer);
          });
        }
        case 'EXPOSE': {
          const ports = ins.values.flatMap((v) => expandList(v, env(), escape)).filter(Boolean).map((p) => (p.includes('/') ? p.toLowerCase() : `${p}/tcp`));
          return cachedStep(cacheKey(state.key, 'EXPOSE', ports), (s) => {
            s.config.config.ExposedPorts = { ...(s.config.config.ExposedPorts ?? {}), ...Object.fromEntries(ports.map((p) => [p, {}])) };
            record(s, `EXPOSE map[${ports.map((p) => `${p}:{}`).join(' ')}]`);
          });
        }
        case 'VOLUME': {
          const vols = ins.values.flatMap((v) => expandList(v, env(), escape)).filter(Boolean);
          return cachedStep(cacheKey(state.key, 'VOLUME', vols), (s) => {
            s.config.config.Volumes = { ...(s.config.config.Volumes ?? {}), ...Object.fromEntries(vols.map((v) => [v, {}])) };
            record(s, `VOLUME [${vols.join(' ')}]`);
          });
        }
        case 'CMD':
        case 'ENTRYPOINT': {
          const argv = argvOf(ins.command, shell());
          // BuildKit's `CMD %q` of the argv: ["sh" "-c" "x"].
          const text = `${ins.kind} [${argv.map((a) => JSON.stringify(a)).join(' ')}]`;
          const resetCmd = ins.kind === 'ENTRYPOINT' && !cmdSetHere;
          if (ins.kind === 'CMD') cmdSetHere = true;
          return cachedStep(cacheKey(state.key, text, resetCmd), (s) => {
            if (ins.kind === 'CMD') s.config.config.Cmd = argv;
            else {
              s.config.config.Entrypoint = argv;
              // Docker: an ENTRYPOINT resets a CMD inherited from the base image.
              if (resetCmd) delete s.config.config.Cmd;
            }
            if (ins.kind === 'CMD') s.config.config.ArgsEscaped = true;
            record(s, text);
          });
        }
        case 'SHELL':
          return cachedStep(cacheKey(state.key, 'SHELL', ins.argv), (s) => {
            s.config.config.Shell = ins.argv;
            record(s, `SHELL [${ins.argv.join(' ')}]`);
          });
        case 'HEALTHCHECK': {
          const hc = {
            Test: ins.test,
            ...(ins.interval ? { Interval: durationNs(ins.interval) } : {}),
            ...(ins.timeout ? { Timeout: durationNs(ins.timeout) } : {}),
            ...(ins.startPeriod ? { StartPeriod: durationNs(ins.startPeriod) } : {}),
            ...(ins.startInterval ? { StartInterval: durationNs(ins.startInterval) } : {}),
            ...(ins.retries !== undefined ? { Retries: ins.retries } : {}),
          };
          return cachedStep(cacheKey(state.key, 'HEALTHCHECK', hc), (s) => {
            s.config.config.Healthcheck = hc;
            record(s, `HEALTHCHECK &{${JSON.stringify(ins.test)}}`);
          });
        }
        case 'ONBUILD':
          return cachedStep(cacheKey(state.key, 'ONBUILD', ins.trigger), (s) => {
            s.config.config.OnBuild = [...(s.config.config.OnBuild ?? []), ins.trigger];
            record(s, `ONBUILD ${ins.trigger}`);
          });
        case 'RUN': {
          let argv = argvOf(ins.command, shell());
          // `RUN <<EOF` whose body starts with #! runs as a program of its own (BuildKit mounts
          // it as a file and executes it): python, bash, ... instead of the SHELL.
          const script = ins.command.form === 'shell' && ins.command.heredocs.length === 1 && /^\s*\d?<<-?['"]?[A-Za-z0-9_]+['"]?\s*$/.test(ins.command.command) && ins.command.heredocs[0]!.content.startsWith('#!') ? ins.command.heredocs[0]!.content : undefined;
          const SCRIPT = '/.burrow-heredoc';
          if (script !== undefined) argv = [SCRIPT];
          const network = ins.network ?? req.network;
          const used = usedArgs();
          const { prepareMounts } = await import('./mounts');
          const mountKeys: unknown[] = [];
          for (const m of ins.mounts) if (m.from) mountKeys.push((await fromSource(x(m.from))).key);
          const createdBy = `RUN ${used.length ? `|${used.length} ${used.join(' ')} ` : ''}${argv.join(' ')} # buildkit`;
          return cachedStep(cacheKey(state.key, 'RUN', argv, script ?? null, used, network, ins.mounts, mountKeys), async (s) => {
            const { runStep } = await import('./run');
            const mounts = await prepareMounts(store, settings, bctx, ins.mounts.map((m) => ({ ...m, ...(m.target ? { target: x(m.target) } : {}), ...(m.source ? { source: x(m.source) } : {}), ...(m.id ? { id: x(m.id) } : {}), ...(m.from ? { from: x(m.from) } : {}) })), req.secrets, s.config.config.WorkingDir || '/', fromSource, tmpDir);
            try {
              const runEnv = [...Object.entries({ ...proxies, ...args }).filter(([k]) => !(s.config.config.Env ?? []).some((e) => e.startsWith(`${k}=`))).map(([k, v]) => `${k}=${v}`)];
              const r = await runStep(store, settings, ctx.runRoot, s, {
                argv,
                env: runEnv,
                network,
                mounts: script === undefined ? mounts.oci : [...mounts.oci, { destination: SCRIPT, type: 'bind', source: scriptFile(script), options: ['rbind', 'ro'] }],
                mountTargets: script === undefined ? mounts.targets : [...mounts.targets, SCRIPT],
                onOutput: (stream, data) => emit({ type: 'output', stage: name, index, stream, data }),
                signal,
                warn,
              }, tmpDir);
              if (r.exit !== 0) {
                throw new BuildStepError(`step ${index}/${total} (${ins.original.split('\n')[0]}) failed: the command ${JSON.stringify(argv.join(' '))} exited with status ${r.exit}${r.tail ? `; its last output:\n${r.tail}` : ''}`, argv, r.exit);
              }
              const layer = await adoptLayer(store, settings, r.layer!.file, r.layer!.result);
              record(s, createdBy, layer);
            } finally {
              mounts.release();
            }
          });
        }
        case 'COPY':
        case 'ADD': {
          const plan = await copyStep(store, bctx, ins, state, x, (b) => expandHeredoc(b, env()), fromSource, resolveChown, tmpDir, signal);
          return cachedStep(cacheKey(state.key, ins.kind, plan.keyParts), async (s) => {
            const layer = await plan.run(settings);
            record(s, `${ins.kind} ${plan.shown} # buildkit`, layer);
          });
        }
        default:
          throw new BurrowError('EBUILD_PARSE', `unknown instruction ${(ins as { kind: string }).kind}`);
      }
    };

    // ONBUILD triggers of the base run right after FROM, then are cleared (Docker).
    const triggers = state.config.config.OnBuild ?? [];
    if (triggers.length) {
      const parsed = parseTriggers(triggers, `${df.file} (ONBUILD of ${stage.from.image})`);
      state = { ...cloneState(state), key: cacheKey(state.key, 'onbuild-clear') };
      delete state.config.config.OnBuild;
      for (const t of parsed) await execute(t);
    }
    for (const ins of stage.instructions) await step(ins, () => execute(ins));
    return state;
  }

  try {
    // Every needed stage starts now: a stage waits for another only where it uses it.
    const all = ordered.map((s) => buildStage(s).catch((err: unknown) => {
      abort.abort();
      throw err;
    }));
    const settled = await Promise.allSettled(all);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    let final = await buildStage(target);
    if (Object.keys(req.labels).length) {
      final = cloneState(final);
      final.config.config.Labels = { ...(final.config.config.Labels ?? {}), ...req.labels };
    }
    const wantImage = !req.outputs.length || req.outputs.some((o) => o.type === 'image');
    const img = commitImage(store, final, wantImage ? req.tags : []);
    const { writeOutputs } = await import('./outputs');
    await writeOutputs(store, settings, img, req.outputs, tmpDir);
    if (!wantImage && !img.repoTags.length) store.deleteImage(img.id);
    return { ...(wantImage ? { imageId: img.id } : {}), tags: req.tags, steps, cached };
  } finally {
    outer?.removeEventListener('abort', onOuter);
    const { removeTrees } = await import('../storage/unpack');
    await removeTrees(settings, [tmpDir]).catch(() => fs.rmSync(tmpDir, { recursive: true, force: true }));
  }
}

export type { StorageSettings };
