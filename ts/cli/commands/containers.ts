/**
 * Container commands, Docker's names and flags: run, create, start, stop, restart, kill, rm, ps,
 * logs, wait, exec, inspect, rename, top, attach, cp, pause, unpause and `container prune`.
 * Flags become engine requests (ts/engine/containers.ts), reports become text: no logic here
 * that the API would need too.
 */
import type { Command } from 'commander';
import { BurrowError, EXIT, errorText, exitStatus } from '../../errors';
import type { CreateHooks } from '../../engine/create';
import { collect, context, type Ctx } from '../context';
import { addRunFlags, toCreateRequest, type RunFlags } from './run-flags';

export { exposedPorts } from '../../engine/create';
import { confirm } from '../prompt';
import { ago, formatRows, humanSize, table } from '../format/table';
import { writeOut } from '../write-out';

type SetExit = (code: number) => void;

/** What the CLI gives every engine call: warnings on stderr (each told to `onWarn`), pulls with progress. */
export function cliHooks(ctx: Ctx, onWarn?: () => void): CreateHooks {
  return {
    warn: (m) => {
      onWarn?.();
      process.stderr.write(`burrow: warning: ${m}\n`);
    },
    async pull(image, platform) {
      // Through the engine, as `burrow pull`: the same progress, and the pull event.
      const [{ pullImage }, { withProgress }, { requireImage }] = await Promise.all([import('../../engine/images'), import('../transfer'), import('../../image/resolve')]);
      const r = await withProgress(false, (hooks) => pullImage(ctx, { reference: image, ...(platform ? { platform } : {}), interruptible: true }, hooks));
      return requireImage(ctx.store, r.id);
    },
  };
}

/**
 * What most container commands start with: the context, the container records and the
 * lifecycle module, the latter two loaded lazily so that other commands do not pay for them.
 */
async function containerCommand(cmd: Command) {
  const ctx = context(cmd);
  const [{ Containers }, lc, engine] = await Promise.all([import('../../container/records'), import('../../container/lifecycle'), import('../../engine/containers')]);
  return { ctx, lc, engine, containers: new Containers(ctx.store) };
}


/**
 * The container commands, at the top level as `burrow run` and again under `burrow container`
 * (`container ls`, `container prune`…), as Docker has them.
 */
export function registerContainerCommands(program: Command, setExit: SetExit, withGroup = true, only?: string): void {
  define(program, setExit, false, only);
  if (!withGroup) return;
  const group = program.command('container').description('manage containers').enablePositionalOptions();
  define(group, setExit, true);
}

/**
 * `only`: the one command this process runs, when known; `run` and `create` then get their
 * sixty-odd flags only when they are that command (building them costs every other command,
 * `images` and `ps` among them, a few milliseconds).
 */
function define(program: Command, setExit: SetExit, inGroup: boolean, only?: string): void {
  const runFlags = (c: Command): Command => (only === undefined || only === c.name() ? addRunFlags(c) : c);
  runFlags(program.command('run').description('create and start a container').argument('<image>').argument('[command...]')).action(
    async (image: string, args: string[], f: RunFlags, cmd: Command) => {
      const ctx = context(cmd);
      // A bad spelling fails before anything is created.
      if (f.detachKeys !== undefined) (await import('../../container/attach')).parseDetachKeys(f.detachKeys);
      const engine = await import('../../engine/containers');
      // A foreground `run --rm` without a terminal or a name may leave a run plan for the native
      // launcher (ts/container/run-plan.ts, loaded only then): its events are collected, and any
      // warning (which the launcher would not repeat) means none.
      const plan = !f.detach && f.rm && !f.tty && !f.interactive && f.name === undefined && !process.env.BURROW_NO_PLAN ? { events: (await import('../../engine/events')).tapEvents(), warned: false } : undefined;
      const rec = await engine.createContainer(ctx, toCreateRequest(image, args, f), cliHooks(ctx, plan && (() => (plan.warned = true))));
      // With a terminal the container runs under the monitor and we attach to it, so that the
      // detach keys can leave it running; without one, the runtime holds it in the foreground
      // (the faster path, and what `run --rm IMG true` takes).
      if (f.detach) {
        const size = f.tty ? (await import('../../container/attach')).terminalSize() : undefined;
        await engine.runContainer(ctx, rec, { mode: 'detached', ...(size ? { ttySize: size } : {}) }, true);
        process.stdout.write(`${rec.id}\n`);
        return;
      }
      const beforeSpawn = plan && ((runtimeArgs: string[]) => import('../../container/run-plan').then((m) => m.writeRunPlan({ ctx, rec, command: args, flags: f, runtimeArgs, events: plan.events, warned: plan.warned, destroy: engine.containerEvent(rec, 'destroy') }), () => undefined));
      const mode = f.tty ? { mode: 'attached' as const, ...(f.detachKeys !== undefined ? { detachKeys: f.detachKeys } : {}) } : { mode: 'foreground' as const, ...(beforeSpawn ? { beforeSpawn } : {}) };
      setExit((await engine.runContainer(ctx, rec, mode, true)) ?? 0);
    },
  );

  runFlags(program.command('create').description('create a container without starting it').argument('<image>').argument('[command...]')).action(
    async (image: string, args: string[], f: RunFlags, cmd: Command) => {
      const ctx = context(cmd);
      const { createContainer } = await import('../../engine/create');
      const rec = await createContainer(ctx, toCreateRequest(image, args, f), cliHooks(ctx));
      process.stdout.write(`${rec.id}\n`);
    },
  );

  program
    .command('start')
    .description('start created or stopped containers')
    .argument('<containers...>')
    .option('-a, --attach', 'attach and wait (foreground)')
    .option('-i, --interactive', 'attach stdin')
    .option('--detach-keys <keys>', 'keys that detach from a container with a terminal (default ctrl-p,ctrl-q)')
    .action(async (refs: string[], opts: { attach?: boolean; interactive?: boolean; detachKeys?: string }, cmd: Command) => {
      const { ctx, lc, engine, containers } = await containerCommand(cmd);
      for (const ref of refs) {
        const rec = containers.find(ref);
        if (lc.stateOf(ctx.store, rec).status === 'running') continue;
        if (opts.attach && rec.tty) {
          // As `run -it`: under the monitor, so that the detach keys leave it running.
          setExit((await engine.runContainer(ctx, rec, { mode: 'attached', interactive: !!opts.interactive && rec.interactive, ...(opts.detachKeys !== undefined ? { detachKeys: opts.detachKeys } : {}) })) ?? 0);
        } else if (opts.attach) {
          setExit((await engine.runContainer(ctx, rec, { mode: 'foreground', interactive: !!opts.interactive || rec.interactive })) ?? 0);
        } else {
          await engine.startContainer(ctx, rec);
          process.stdout.write(`${ref}\n`);
        }
      }
    });

  program
    .command('stop')
    .description('stop containers: the stop signal, then SIGKILL after the timeout')
    .argument('<containers...>')
    .option('-t, --time <seconds>', 'seconds to wait before killing')
    .action(async (refs: string[], opts: { time?: string }, cmd: Command) => {
      const { ctx, engine, containers } = await containerCommand(cmd);
      await Promise.all(
        refs.map(async (ref) => {
          const rec = containers.find(ref);
          await engine.stopContainer(ctx, rec, opts.time !== undefined ? Number(opts.time) : undefined);
          process.stdout.write(`${ref}\n`);
        }),
      );
    });

  program
    .command('kill')
    .description('send a signal to containers (default SIGKILL)')
    .argument('<containers...>')
    .option('-s, --signal <signal>', 'signal', 'KILL')
    .action(async (refs: string[], opts: { signal: string }, cmd: Command) => {
      const { ctx, engine, containers } = await containerCommand(cmd);
      for (const ref of refs) {
        engine.killContainer(ctx, containers.find(ref), opts.signal);
        process.stdout.write(`${ref}\n`);
      }
    });

  for (const [word, pause] of [['pause', true], ['unpause', false]] as const) {
    program
      .command(word)
      .description(pause ? 'freeze every process of containers (needs a cgroup freezer)' : 'thaw paused containers')
      .argument('<containers...>')
      .action(async (refs: string[], _o: unknown, cmd: Command) => {
        const { ctx, engine, containers } = await containerCommand(cmd);
        for (const ref of refs) {
          await engine.pauseContainer(ctx, containers.find(ref), pause);
          process.stdout.write(`${ref}\n`);
        }
      });
  }

  const rm = program.command('rm');
  if (inGroup) rm.alias('remove');
  rm
    .description('remove containers')
    .argument('<containers...>')
    .option('-f, --force', 'kill a running container first')
    .option('-v, --volumes', 'remove anonymous volumes')
    .action(async (refs: string[], opts: { force?: boolean; volumes?: boolean }, cmd: Command) => {
      const { ctx, engine, containers } = await containerCommand(cmd);
      // Each container in turn; the first failure's status is the command's (125: burrow's own).
      let status = 0;
      for (const ref of refs) {
        try {
          const rec = containers.find(ref);
          await engine.removeContainer(ctx, rec, { force: !!opts.force, volumes: !!opts.volumes });
          process.stdout.write(`${ref}\n`);
        } catch (err) {
          if (opts.force && err instanceof BurrowError && err.code === 'ECONTAINER_NOT_FOUND') continue;
          process.stderr.write(errorText(err));
          status ||= exitStatus(err);
        }
      }
      if (status) setExit(status);
    });

  const ps = program.command('ps');
  if (inGroup) ps.aliases(['ls', 'list']);
  ps
    .description('list containers')
    .option('-a, --all', 'include stopped containers')
    .option('-q, --quiet', 'only ids')
    .option('-n, --last <n>', 'the n most recently created')
    .option('--no-trunc', 'do not truncate')
    .option('--format <template>', 'Go-template-like format, or json')
    .option('-f, --filter <key=value>', 'id=, name=, label=, status=, ancestor=, exited=, before=, since=, health=', collect, [])
    .action(async (opts: { all?: boolean; quiet?: boolean; last?: string; trunc: boolean; format?: string; filter: string[] }, cmd: Command) => {
      // Records and their state only: listing needs neither the lifecycle code (child_process,
      // the runtime client) nor the store's settings or the host probe.
      const ctx = context(cmd);
      const [{ Containers }, { listContainers, filtersFromFlags, statusText }] = await Promise.all([import('../../container/records'), import('../../engine/list')]);
      const containers = new Containers(ctx.store);
      const list = listContainers(ctx, { all: !!opts.all, ...(opts.last !== undefined ? { last: Number(opts.last) } : {}), filters: filtersFromFlags(opts.filter) });
      // The ports column reads the network's state (network/inspect, which loads node:os): only
      // for running containers that publish ports.
      const publishing = list.some(({ rec: r, state: st }) => st.status === 'running' && r.net?.ports.length);
      const { portsColumn } = publishing ? await import('../../network/inspect') : { portsColumn: (): string => '' };
      const fmt = list.map(({ rec: r, state: st, status: state, health }) => ({
        ID: opts.trunc ? r.id.slice(0, 12) : r.id,
        Image: r.imageName,
        Command: JSON.stringify(opts.trunc && r.command.join(' ').length > 20 ? `${r.command.join(' ').slice(0, 19)}…` : r.command.join(' ')),
        CreatedAt: r.created,
        RunningFor: ago(r.created),
        Status: statusText({ state: st, status: state, ...(health ? { health } : {}) }),
        State: state,
        Names: r.name,
        Ports: st.status === 'running' && r.net?.ports.length ? portsColumn(containers.dir(r.id)) : '',
        Labels: Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(','),
      }));
      if (opts.quiet) writeOut(fmt.map((x) => `${x.ID}\n`).join(''));
      else if (opts.format) writeOut(formatRows(opts.format, fmt, { ID: 'CONTAINER ID', Image: 'IMAGE', Command: 'COMMAND', RunningFor: 'CREATED', Status: 'STATUS', Names: 'NAMES', Ports: 'PORTS' }));
      else writeOut(table(['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES'], fmt.map((x) => [x.ID, x.Image, x.Command, x.RunningFor, x.Status, x.Ports, x.Names])));
    });

  program
    .command('port')
    .description("list a container's published ports, or the host addresses of one of them")
    .argument('<container>')
    .argument('[port]', 'PORT[/tcp|/udp]')
    .action(async (ref: string, port: string | undefined, _o: unknown, cmd: Command) => {
      const { ctx, lc, containers } = await containerCommand(cmd);
      const rec = containers.find(ref);
      const { portLines } = await import('../../network/inspect');
      const lines = lc.stateOf(ctx.store, rec).status === 'running' ? portLines(containers.dir(rec.id), port) : [];
      if (port && !lines.length) throw new BurrowError('EUSAGE', `no public port '${port.includes('/') ? port : `${port}/tcp`}' published for ${ref}`);
      process.stdout.write(lines.map((l) => `${l}\n`).join(''));
    });

  program
    .command('logs')
    .description("print a container's output")
    .argument('<container>')
    .option('-f, --follow', 'follow new output until the container exits')
    .option('--tail <n>', 'only the last n lines', 'all')
    .option('-t, --timestamps', 'show timestamps')
    .option('--since <time>', 'only after this time (RFC 3339 or a duration like 10m)')
    .action(async (ref: string, opts: { follow?: boolean; tail: string; timestamps?: boolean; since?: string }, cmd: Command) => {
      const ctx = context(cmd);
      const { Containers } = await import('../../container/records');
      const { streamLogs } = await import('../../container/logs');
      const rec = new Containers(ctx.store).find(ref);
      await streamLogs(ctx.store, rec, { follow: !!opts.follow, tail: opts.tail === 'all' ? undefined : Number(opts.tail), timestamps: !!opts.timestamps, ...(opts.since ? { since: opts.since } : {}) });
    });

  program
    .command('wait')
    .description('wait for containers to stop and print their exit codes')
    .argument('<containers...>')
    .option('--condition <condition>', 'not-running (default), next-exit or removed')
    .action(async (refs: string[], opts: { condition?: string }, cmd: Command) => {
      const { ctx, engine, containers } = await containerCommand(cmd);
      for (const ref of refs) {
        const code = await engine.waitContainer(ctx, containers.find(ref), (opts.condition ?? 'not-running') as 'not-running');
        process.stdout.write(`${code}\n`);
      }
    });

  program
    .command('exec')
    .description('run a command in a running container')
    .argument('<container>')
    .argument('<command...>')
    .option('-i, --interactive', 'keep stdin open')
    .option('-t, --tty', 'allocate a terminal')
    .option('-d, --detach', 'run in the background')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable', collect, [])
    .option('-u, --user <uid[:gid]>', 'user to run as')
    .option('-w, --workdir <dir>', 'working directory')
    .passThroughOptions()
    .action(async (ref: string, command: string[], opts: { interactive?: boolean; tty?: boolean; detach?: boolean; env: string[]; user?: string; workdir?: string }, cmd: Command) => {
      const ctx = context(cmd);
      const { Containers } = await import('../../container/records');
      const { execIn } = await import('../../container/exec');
      const rec = new Containers(ctx.store).find(ref);
      setExit(await execIn(ctx.store, rec, command, { interactive: !!opts.interactive, tty: !!opts.tty, detach: !!opts.detach, env: opts.env, ...(opts.user ? { user: opts.user } : {}), ...(opts.workdir ? { workdir: opts.workdir } : {}) }));
    });

  program
    .command('inspect')
    .description('low-level information on containers and images, as JSON')
    .argument('<names...>')
    .option('-f, --format <template>', 'Go-template-like format')
    .option('--type <type>', 'container or image')
    .action(async (names: string[], opts: { format?: string; type?: string }, cmd: Command) => {
      const ctx = context(cmd);
      const { inspectAny } = await import('../../container/inspect');
      const { render } = await import('../format/table');
      const out: object[] = [];
      let failed = false;
      for (const n of names) {
        const r = inspectAny(ctx.store, n, opts.type);
        if (r) out.push(r);
        else {
          process.stderr.write(errorText(new BurrowError('EUSAGE', `no such object: ${n}`)));
          failed = true;
        }
      }
      if (opts.format) writeOut(out.map((o) => render(opts.format!, o as Record<string, unknown>)).join('\n') + (out.length ? '\n' : ''));
      else writeOut(JSON.stringify(out, null, 4) + '\n');
      if (failed) setExit(EXIT.ENGINE);
    });

  program
    .command('rename')
    .description('rename a container')
    .argument('<container>')
    .argument('<new-name>')
    .action(async (ref: string, newName: string, _o: unknown, cmd: Command) => {
      const { ctx, engine, containers } = await containerCommand(cmd);
      engine.renameContainer(ctx, containers.find(ref), newName);
    });

  program
    .command('top')
    .description("show a container's processes (options are the host ps's, default -ef)")
    .argument('<container>')
    .argument('[ps-options...]')
    .allowUnknownOption()
    .passThroughOptions()
    .action(async (ref: string, psArgs: string[], _o: unknown, cmd: Command) => {
      const { ctx, engine, containers } = await containerCommand(cmd);
      process.stdout.write(engine.topContainer(ctx, containers.find(ref), psArgs));
    });

  program
    .command('restart')
    .description('stop and start containers again')
    .argument('<containers...>')
    .option('-t, --time <seconds>', 'seconds to wait before killing')
    .action(async (refs: string[], opts: { time?: string }, cmd: Command) => {
      const { ctx, engine, containers } = await containerCommand(cmd);
      for (const ref of refs) {
        const rec = containers.find(ref);
        await engine.restartContainer(ctx, rec, opts.time !== undefined ? Number(opts.time) : undefined);
        process.stdout.write(`${ref}\n`);
      }
    });

  program
    .command('attach')
    .description("attach to a running container: its output, our stdin (-i containers), until it exits (its status is ours) or the detach keys")
    .argument('<container>')
    .option('--no-stdin', 'do not attach stdin')
    .option('--detach-keys <keys>', 'keys that detach (default ctrl-p,ctrl-q)')
    .option('--sig-proxy <bool>', 'pass the signals we get on to the container (without a terminal)', 'true')
    .action(async (ref: string, opts: { stdin: boolean; detachKeys?: string; sigProxy: string }, cmd: Command) => {
      const { ctx, lc, containers } = await containerCommand(cmd);
      const { attachTo } = await import('../../container/attach');
      const rec = containers.find(ref);
      if (lc.stateOf(ctx.store, rec).status !== 'running') throw new BurrowError('ECONTAINER_STATE', 'you cannot attach to a stopped container, start it first');
      const signal = (sig: NodeJS.Signals) => {
        try {
          lc.signal(rec, sig);
        } catch {
          /* it has exited */
        }
      };
      setExit(await attachTo(ctx.store, rec, { stdin: opts.stdin, ...(opts.detachKeys !== undefined ? { detachKeys: opts.detachKeys } : {}), sigProxy: opts.sigProxy !== 'false', signal }));
    });

  program
    .command('cp')
    .description('copy files between a container and the host: cp [OPTIONS] CONTAINER:SRC DEST | SRC CONTAINER:DEST')
    .argument('<src>')
    .argument('<dest>')
    .option('-a, --archive', "keep the files' owners (uid/gid)")
    .option('-L, --follow-link', 'follow a symbolic link in SRC')
    .option('-q, --quiet', 'no summary line')
    .action(async (src: string, dest: string, opts: { archive?: boolean; followLink?: boolean; quiet?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      if (src === '-' || dest === '-') throw new BurrowError('EUSAGE', 'copying a tar stream from stdin or to stdout (-) is not supported yet');
      const { splitCopyArg, copy } = await import('../../container/copy');
      const s = splitCopyArg(src);
      const d = splitCopyArg(dest);
      if (s.container && d.container) throw new BurrowError('EUSAGE', 'copying between containers is not supported');
      if (!s.container && !d.container) throw new BurrowError('EUSAGE', 'must specify at least one container source', 'write the container side as CONTAINER:PATH');
      const { Containers } = await import('../../container/records');
      const rec = new Containers(ctx.store).find((s.container ?? d.container)!);
      const into = !!d.container;
      const bytes = copy(ctx.store, rec, into, into ? d.path : s.path, into ? s.path : d.path, { archive: !!opts.archive, followLink: !!opts.followLink });
      if (!opts.quiet && process.stderr.isTTY) process.stderr.write(`Successfully copied ${humanSize(bytes)} to ${dest}\n`);
    });

  if (inGroup) {
    program
      .command('prune')
      .description('remove all stopped containers')
      .option('-f, --force', 'do not ask for confirmation')
      .option('--filter <key=value>', 'label=, label!=, until=', collect, [])
      .action(async (opts: { force?: boolean; filter: string[] }, cmd: Command) => {
        const ctx = context(cmd);
        if (!confirm('container prune', 'WARNING! This will remove all stopped containers.', opts.force)) return;
        const { pruneContainers } = await import('../../engine/containers');
        const { ids, bytes } = await pruneContainers(ctx, opts.filter);
        if (ids.length) process.stdout.write(`Deleted Containers:\n${ids.map((i) => `${i}\n`).join('')}\n`);
        process.stdout.write(`Total reclaimed space: ${humanSize(bytes)}\n`);
      });
  }
}

