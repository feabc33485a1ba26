/**
 * Container commands, Docker's names and flags: run, create, start, stop, restart, kill, rm, ps,
 * logs, wait, exec, inspect, rename, top, attach, cp, and `container prune`.
 */
import type { Command } from 'commander';
import { BurrowError, EXIT, errorText, exitStatus } from '../../errors';
import type { LimitFlags } from '../../container/limits';
import { collect, context, registryOptions, type Ctx } from '../context';
import { confirm } from '../prompt';
import { ago, formatRows, humanAge, humanSize, table } from '../format/table';
import { writeOut } from '../write-out';

type SetExit = (code: number) => void;

interface RunFlags extends LimitFlags {
  name?: string;
  rm?: boolean;
  detach?: boolean;
  interactive?: boolean;
  tty?: boolean;
  env: string[];
  envFile: string[];
  volume: string[];
  mount: string[];
  tmpfs: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  hostname?: string;
  readOnly?: boolean;
  init?: boolean;
  capAdd: string[];
  capDrop: string[];
  securityOpt: string[];
  privileged?: boolean;
  ulimit: string[];
  label: string[];
  pull: string;
  platform?: string;
  stopSignal?: string;
  stopTimeout?: string;
  logDriver?: string;
  network?: string;
  userns?: string;
  userFallback?: string;
  initPath?: string;
  groupAdd: string[];
  device: string[];
  publish: string[];
  publishAll?: boolean;
  expose: string[];
  dns: string[];
  dnsSearch: string[];
  dnsOption: string[];
  addHost: string[];
  detachKeys?: string;
  [k: string]: unknown;
}

function addRunFlags(c: Command): Command {
  return c
    .option('--name <name>', 'container name')
    .option('--rm', 'remove the container when it exits')
    .option('-d, --detach', 'run in the background and print the id')
    .option('-i, --interactive', 'keep stdin open')
    .option('-t, --tty', 'allocate a terminal')
    .option('--detach-keys <keys>', 'keys that detach from a container with a terminal (default ctrl-p,ctrl-q)')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable', collect, [])
    .option('--env-file <file>', 'read environment variables from a file', collect, [])
    .option('-v, --volume <src:dst[:opts]>', 'bind mount a host path or a named volume', collect, [])
    .option('--mount <spec>', 'type=bind|volume|tmpfs,source=…,target=…[,readonly]', collect, [])
    .option('--tmpfs <dst[:opts]>', 'mount a tmpfs', collect, [])
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <user[:group]>', 'user to run as')
    .option('--entrypoint <cmd>', 'override the image entrypoint')
    .option('-h, --hostname <name>', 'container host name')
    .option('--read-only', 'mount the root filesystem read-only')
    .option('--init', 'run an init as pid 1 that reaps zombies, forwards signals and exits with the command (tini-static or catatonit)')
    .option('--init-path <path>', 'the static init binary to use; env BURROW_INIT_PATH, config init_path')
    .option('--cap-add <cap>', 'add a capability', collect, [])
    .option('--cap-drop <cap>', 'drop a capability', collect, [])
    .option('--security-opt <opt>', 'no-new-privileges, seccomp=FILE|unconfined', collect, [])
    .option('--privileged', 'all capabilities of the user namespace, no seccomp')
    .option('--ulimit <name=soft[:hard]>', 'resource limit', collect, [])
    .option('-l, --label <key=value>', 'set a label', collect, [])
    .option('--pull <policy>', 'always, missing or never', 'missing')
    .option('--platform <os/arch[/variant]>', 'platform of the image to pull')
    .option('--stop-signal <signal>', 'signal to stop the container')
    .option('--stop-timeout <seconds>', 'seconds before SIGKILL on stop')
    .option('--log-driver <driver>', 'k8s-file (default), json-file or none; env BURROW_LOG_DRIVER, config log_driver')
    .option('--network <mode>', 'slirp4netns[:OPTS] (default where installed; OPTS: allow_host_loopback, mtu, cidr, enable_ipv6, port_handler=burrow|bypass|slirp4netns), pasta[:OPTS], none, host, container:NAME; env BURROW_NETWORK, config network')
    .option('--net <mode>', 'alias of --network')
    .option('--userns <mode>', "subuid (the store's), keep-id (your uid inside), single, host (root only); env BURROW_USERNS, config userns")
    .option('--user-fallback <mode>', 'a user the id map lacks (single-id mode): root (run as container root, with a warning) or error; env BURROW_USER_FALLBACK, config user_fallback')
    .option('--group-add <group>', "an additional group (image group name or gid), or keep-groups: keep your own supplementary groups", collect, [])
    .option('--device <host[:container][:rwm]>', 'add a host device (rootless: one you may open)', collect, [])
    .option('-p, --publish <spec>', 'publish a port: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp], ranges as 8000-8010:80-90', collect, [])
    .option('--expose <port>', 'expose a port or a range (PORT[-PORT][/tcp|/udp]) without publishing it; -P publishes it', collect, [])
    .option('-P, --publish-all', "publish every port the image or --expose exposes on a free host port")
    .option('--dns <ip>', 'a DNS server for /etc/resolv.conf', collect, [])
    .option('--dns-search <domain>', 'a DNS search domain', collect, [])
    .option('--dns-option <option>', 'a resolv.conf option', collect, [])
    .option('--add-host <host:ip>', 'an /etc/hosts entry (ip host-gateway: the host)', collect, [])
    .option('-m, --memory <bytes>', 'memory limit (e.g. 32m, 1g)')
    .option('--memory-swap <bytes>', 'memory plus swap limit (-1: unlimited swap)')
    .option('--memory-reservation <bytes>', 'memory soft limit')
    .option('--oom-kill-disable', 'disable the OOM killer')
    .option('--cpus <n>', 'CPU limit (e.g. 0.5)')
    .option('-c, --cpu-shares <n>', 'CPU weight (mapped to cpu.weight)')
    .option('--cpu-quota <us>', 'CPU CFS quota')
    .option('--cpu-period <us>', 'CPU CFS period')
    .option('--cpuset-cpus <list>', 'CPUs allowed')
    .option('--cpuset-mems <list>', 'memory nodes allowed')
    .option('--pids-limit <n>', 'process limit')
    .option('--blkio-weight <n>', 'block I/O weight (10-1000)')
    .option('--device-read-bps <dev:rate>', 'read rate limit of a device, e.g. /dev/sda:1mb', collect, [])
    .option('--device-write-bps <dev:rate>', 'write rate limit of a device', collect, [])
    .option('--device-read-iops <dev:n>', 'read operations per second of a device', collect, [])
    .option('--device-write-iops <dev:n>', 'write operations per second of a device', collect, [])
    .option('--cgroup-conf <key=value>', 'a cgroup v2 file and the value to write into it, e.g. memory.high=67108864', collect, [])
    .option('--cgroups <mode>', 'enabled (default), no-conmon (the same: the monitor is never in the container\'s cgroup) or disabled: run without the requested limits after one warning', 'enabled')
    .passThroughOptions();
}

/** `--expose 80 --expose 8000-8001/udp` as Docker's ExposedPorts keys (`80/tcp`, `8000/udp`, `8001/udp`). */
export function exposedPorts(flags: string[]): string[] {
  const out: string[] = [];
  for (const f of flags) {
    const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/.exec(f.trim());
    const bad = !m || Number(m[1]) < 1 || Number(m[1]) > 65535 || (m[2] !== undefined && (Number(m[2]) < Number(m[1]) || Number(m[2]) > 65535));
    if (bad) throw new BurrowError('EUSAGE', `invalid --expose ${f}: want PORT, PORT-PORT, optionally /tcp or /udp`);
    // A range is one key per port, as Docker records it.
    for (let p = Number(m[1]); p <= Number(m[2] ?? m[1]); p++) {
      const key = `${p}/${m[3] ?? 'tcp'}`;
      if (!out.includes(key)) out.push(key);
    }
  }
  return out;
}

async function prepare(ctx: Ctx, image: string, args: string[], f: RunFlags) {
  const settings = await ctx.settings();
  // Defaults from BURROW_* variables and the config file, read only here (flags win).
  const { setting, LOG_DRIVERS, USERNS_MODES, loadConfig } = await import('../../config/config');
  // Checked with its options by ts/network (slirp4netns:mtu=…, container:NAME); '' is the default.
  const network = setting((f.net as string | undefined) ?? f.network, 'BURROW_NETWORK', (c) => c.containers.network, '');
  const logDriver = setting(f.logDriver, 'BURROW_LOG_DRIVER', (c) => c.containers.logDriver, 'k8s-file', LOG_DRIVERS);
  if (!LOG_DRIVERS.includes(logDriver)) throw new BurrowError('EUSAGE', `invalid --log-driver ${logDriver}: want ${LOG_DRIVERS.join(', ')}`);
  // '' is the store's own mapping: a single-id store has no subuid mapping to default to.
  const userns = setting(f.userns, 'BURROW_USERNS', (c) => c.containers.userns, '', USERNS_MODES);
  if (userns && !USERNS_MODES.includes(userns)) throw new BurrowError('EUSAGE', `invalid --userns ${userns}: want ${USERNS_MODES.join(', ')}`);
  const { identityFor } = await import('../../container/userns');
  const identity = userns ? identityFor(userns as 'subuid', settings) : undefined;
  let init: { hostPath: string; containerPath: string } | undefined;
  if (f.init) {
    const { findInit, INIT_PATH } = await import('../../container/init');
    init = { hostPath: findInit(f.initPath ?? (process.env.BURROW_INIT_PATH || loadConfig().containers.initPath)), containerPath: INIT_PATH };
  } else if (f.initPath) throw new BurrowError('EUSAGE', '--init-path is only used with --init');
  const { parseDevice } = await import('../../container/spec');
  const devices = f.device.map(parseDevice);
  const { findImage } = await import('../../image/resolve');
  let img = f.pull === 'always' ? undefined : findImage(ctx.store, image);
  if (!img) {
    if (f.pull === 'never') throw new BurrowError('EIMAGE_NOT_FOUND', `no such image: ${image}`, `pull it first: burrow pull ${image}`);
    const pull = await import('../../image/pull').catch(() => undefined);
    if (!pull) throw new BurrowError('EIMAGE_NOT_FOUND', `no such image: ${image}`);
    img = await pull.pullImage(ctx.store, settings, image, { quiet: false, ...(f.platform ? { platform: f.platform } : {}), registry: registryOptions() });
  }
  // Limits are accepted only where this host lets this user enforce them (ts/container/limits.ts).
  const { toResources, checkEnforceable } = await import('../../container/limits');
  const { resources, needs } = toResources(f);
  let limits: Record<string, unknown> | undefined;
  const cgroupMode = f.cgroups ?? 'enabled';
  if (!['enabled', 'no-conmon', 'disabled'].includes(cgroupMode)) throw new BurrowError('EUSAGE', `invalid --cgroups ${cgroupMode}: want enabled, no-conmon or disabled`);
  const optOut = cgroupMode === 'disabled' || process.env.BURROW_CGROUPS === 'disabled';
  if (needs.length) {
    const { native } = await import('../../native');
    const info = JSON.parse(native().cgroupInfo()) as { mode: string; enforceable: string[]; delegationRoot: string | null; manager: string };
    if (checkEnforceable(needs, info, optOut)) limits = resources;
  }
  const { prepareContainer, imageConfig } = await import('../../container/create');
  const { networkRecord } = await import('../../network/options');
  const netFlags = { ...(network ? { network } : {}), publish: f.publish, publishAll: !!f.publishAll, dns: f.dns, dnsSearch: f.dnsSearch, dnsOption: f.dnsOption, addHost: f.addHost };
  const expose = exposedPorts(f.expose);
  const exposed = f.publishAll ? { ...(imageConfig(ctx.store, img).config?.ExposedPorts ?? {}), ...Object.fromEntries(expose.map((p) => [p, {}])) } : undefined;
  const net = networkRecord(netFlags, exposed, (m) => process.stderr.write(`burrow: warning: ${m}\n`));
  if (net.mode === 'container') net.container = new (await import('../../container/records')).Containers(ctx.store).find(net.container!).id;
  return prepareContainer(
    ctx.store,
    settings,
    img,
    image,
    {
      ...(f.name !== undefined ? { name: f.name } : {}),
      args,
      ...(f.entrypoint !== undefined ? { entrypoint: f.entrypoint } : {}),
      env: f.env,
      envFiles: f.envFile,
      ...(f.workdir ? { workdir: f.workdir } : {}),
      ...(f.user ? { user: f.user } : {}),
      ...(userns ? { userns } : {}),
      ...(f.userFallback ? { userFallback: f.userFallback } : {}),
      ...(f.hostname ? { hostname: f.hostname } : {}),
      tty: !!f.tty,
      interactive: !!f.interactive,
      rm: !!f.rm,
      detach: !!f.detach,
      readOnly: !!f.readOnly,
      capAdd: f.capAdd,
      capDrop: f.capDrop,
      privileged: !!f.privileged,
      securityOpt: f.securityOpt,
      ulimits: f.ulimit,
      labels: f.label,
      volumes: f.volume,
      mounts: f.mount,
      tmpfs: f.tmpfs,
      network: net.mode === 'container' ? `container:${net.container}` : net.mode,
      net,
      logDriver,
      ...(identity ? { identity } : {}),
      groupAdd: f.groupAdd,
      devices,
      ...(init ? { init } : {}),
      ...(f.stopSignal ? { stopSignal: f.stopSignal } : {}),
      ...(f.stopTimeout ? { stopTimeout: Number(f.stopTimeout) } : {}),
      ...(limits ? { resources: limits } : {}),
      ...(optOut ? { noCgroup: true } : {}),
      ...(expose.length ? { expose } : {}),
    },
    ctx.runRoot,
  );
}

/**
 * What most container commands start with: the context, the container records and the
 * lifecycle module, the latter two loaded lazily so that other commands do not pay for them.
 */
async function containerCommand(cmd: Command) {
  const ctx = context(cmd);
  const [{ Containers }, lc] = await Promise.all([import('../../container/records'), import('../../container/lifecycle')]);
  return { ctx, lc, containers: new Containers(ctx.store) };
}

function status(st: { status: string; exitCode: number; startedAt?: string; finishedAt?: string }): string {
  if (st.status === 'running') return `Up ${humanAge(st.startedAt)}`;
  if (st.status === 'exited') return `Exited (${st.exitCode}) ${humanAge(st.finishedAt)} ago`;
  return 'Created';
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
      const rec = await prepare(ctx, image, args, f);
      const lc = await import('../../container/lifecycle');
      // With a terminal the container runs under the monitor and we attach to it, so that the
      // detach keys can leave it running; without one, the runtime holds it in the foreground
      // (the faster path, and what `run --rm IMG true` takes).
      if (f.detach || f.tty) {
        const cleanup = rec.autoRemove ? lc.selfCommand(ctx.globalArgs, 'rm', '-f', rec.id) : undefined;
        const at = f.tty ? await import('../../container/attach') : undefined;
        if (at && !f.detach) {
          setExit(await at.runAttached(ctx.store, rec, cleanup, f.detachKeys).catch(async (err: unknown) => {
            await lc.remove(ctx.store, await ctx.settings(), rec, true).catch(() => undefined);
            throw err;
          }));
          return;
        }
        const size = at?.terminalSize();
        try {
          await lc.startDetached(ctx.store, rec, cleanup, size ? { ttySize: size } : {});
        } catch (err) {
          await lc.remove(ctx.store, await ctx.settings(), rec, true).catch(() => undefined);
          throw err;
        }
        process.stdout.write(`${rec.id}\n`);
        return;
      }
      // --rm: we remove it; the runtime does if we are killed first (lifecycle.ts runForeground).
      const code = await lc.runForeground(ctx.store, rec, rec.autoRemove ? lc.selfCommand(ctx.globalArgs, 'rm', '-f', rec.id) : undefined);
      if (rec.autoRemove) await lc.remove(ctx.store, await ctx.settings(), rec, true);
      setExit(code);
    },
  );

  runFlags(program.command('create').description('create a container without starting it').argument('<image>').argument('[command...]')).action(
    async (image: string, args: string[], f: RunFlags, cmd: Command) => {
      const rec = await prepare(context(cmd), image, args, f);
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
      const { ctx, lc, containers } = await containerCommand(cmd);
      for (const ref of refs) {
        const rec = containers.find(ref);
        if (lc.stateOf(ctx.store, rec).status === 'running') continue;
        const cleanup = rec.autoRemove ? lc.selfCommand(ctx.globalArgs, 'rm', '-f', rec.id) : undefined;
        if (opts.attach && rec.tty) {
          // As `run -it`: under the monitor, so that the detach keys leave it running.
          const { runAttached } = await import('../../container/attach');
          setExit(await runAttached(ctx.store, { ...rec, interactive: !!opts.interactive && rec.interactive }, cleanup, opts.detachKeys));
        } else if (opts.attach) {
          setExit(await lc.runForeground(ctx.store, { ...rec, interactive: !!opts.interactive || rec.interactive }, cleanup));
          if (rec.autoRemove) await lc.remove(ctx.store, await ctx.settings(), rec, true);
        } else {
          await lc.startDetached(ctx.store, rec, cleanup);
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
      const { ctx, lc, containers } = await containerCommand(cmd);
      await Promise.all(
        refs.map(async (ref) => {
          const rec = containers.find(ref);
          await lc.stop(ctx.store, rec, opts.time !== undefined ? Number(opts.time) : rec.stopTimeout);
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
      const { ctx, lc, containers } = await containerCommand(cmd);
      for (const ref of refs) {
        const rec = containers.find(ref);
        if (lc.stateOf(ctx.store, rec).status !== 'running') throw new BurrowError('ECONTAINER_STATE', `cannot kill container ${ref}: it is not running`);
        lc.signal(rec, opts.signal);
        process.stdout.write(`${ref}\n`);
      }
    });

  const rm = program.command('rm');
  if (inGroup) rm.alias('remove');
  rm
    .description('remove containers')
    .argument('<containers...>')
    .option('-f, --force', 'kill a running container first')
    .option('-v, --volumes', 'remove anonymous volumes')
    .action(async (refs: string[], opts: { force?: boolean; volumes?: boolean }, cmd: Command) => {
      const { ctx, lc, containers } = await containerCommand(cmd);
      // Each container in turn; the first failure's status is the command's (125: burrow's own).
      let status = 0;
      for (const ref of refs) {
        try {
          const rec = containers.find(ref);
          await lc.remove(ctx.store, await ctx.settings(), rec, !!opts.force, !!opts.volumes);
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
    .option('-f, --filter <key=value>', 'name=, id=, status=, label=, ancestor=', collect, [])
    .action(async (opts: { all?: boolean; quiet?: boolean; last?: string; trunc: boolean; format?: string; filter: string[] }, cmd: Command) => {
      // Records and their state only: listing needs neither the lifecycle code (child_process,
      // the runtime client) nor the store's settings or the host probe.
      const ctx = context(cmd);
      const [{ Containers }, { containerState }] = await Promise.all([import('../../container/records'), import('../../container/state')]);
      const containers = new Containers(ctx.store);
      const recs = containers.all().sort((a, b) => b.created.localeCompare(a.created));
      const rows = recs
        .map((r) => ({ r, st: containerState(r, containers.dir(r.id)) }))
        .filter(({ st }) => opts.all || opts.last !== undefined || st.status === 'running')
        .filter(({ r, st }) =>
          opts.filter.every((f) => {
            const [k = '', v = ''] = f.split('=', 2);
            if (k === 'name') return r.name.includes(v);
            if (k === 'id') return r.id.startsWith(v);
            if (k === 'status') return st.status === v;
            if (k === 'ancestor') return r.imageName === v || r.image.includes(v);
            if (k === 'label') {
              const [lk = '', lv] = v.split('=', 2);
              return lk in r.labels && (lv === undefined || r.labels[lk] === lv);
            }
            throw new BurrowError('EUSAGE', `invalid filter ${f}`);
          }),
        );
      const list = opts.last !== undefined ? rows.slice(0, Number(opts.last)) : rows;
      // The ports column reads the network's state (network/inspect, which loads node:os): only
      // for running containers that publish ports.
      const publishing = list.some(({ r, st }) => st.status === 'running' && r.net?.ports.length);
      const { portsColumn } = publishing ? await import('../../network/inspect') : { portsColumn: (): string => '' };
      const fmt = list.map(({ r, st }) => ({
        ID: opts.trunc ? r.id.slice(0, 12) : r.id,
        Image: r.imageName,
        Command: JSON.stringify(opts.trunc && r.command.join(' ').length > 20 ? `${r.command.join(' ').slice(0, 19)}…` : r.command.join(' ')),
        CreatedAt: r.created,
        RunningFor: ago(r.created),
        Status: status(st),
        State: st.status,
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
    .action(async (refs: string[], _o: unknown, cmd: Command) => {
      const { ctx, lc, containers } = await containerCommand(cmd);
      for (const ref of refs) {
        const rec = containers.find(ref);
        while (lc.stateOf(ctx.store, rec).status === 'running') await lc.waitStopped(ctx.store, rec, 60_000);
        // The monitor records the status right after the init is reaped.
        let st = lc.stateOf(ctx.store, rec);
        for (let i = 0; i < 100 && st.exitCode === -1; i++) {
          await new Promise((r) => setTimeout(r, 10));
          st = lc.stateOf(ctx.store, rec);
        }
        process.stdout.write(`${st.exitCode}\n`);
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
      const ctx = context(cmd);
      const { Containers } = await import('../../container/records');
      const containers = new Containers(ctx.store);
      containers.rename(containers.find(ref), newName);
    });

  program
    .command('top')
    .description("show a container's processes (options are the host ps's, default -ef)")
    .argument('<container>')
    .argument('[ps-options...]')
    .allowUnknownOption()
    .passThroughOptions()
    .action(async (ref: string, psArgs: string[], _o: unknown, cmd: Command) => {
      const { ctx, lc, containers } = await containerCommand(cmd);
      process.stdout.write(lc.top(ctx.store, containers.find(ref), psArgs));
    });

  program
    .command('restart')
    .description('stop and start containers again')
    .argument('<containers...>')
    .option('-t, --time <seconds>', 'seconds to wait before killing')
    .action(async (refs: string[], opts: { time?: string }, cmd: Command) => {
      const { ctx, lc, containers } = await containerCommand(cmd);
      for (const ref of refs) {
        const rec = containers.find(ref);
        await lc.restart(ctx.store, rec, opts.time !== undefined ? Number(opts.time) : rec.stopTimeout, ctx.globalArgs);
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
        const lc = await import('../../container/lifecycle');
        const { ids, bytes } = await lc.prune(ctx.store, await ctx.settings(), opts.filter);
        if (ids.length) process.stdout.write(`Deleted Containers:\n${ids.map((i) => `${i}\n`).join('')}\n`);
        process.stdout.write(`Total reclaimed space: ${humanSize(bytes)}\n`);
      });
  }
}

