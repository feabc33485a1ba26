/**
 * The service's own entry: `burrow system service` and `burrow system dial-stdio`, without the
 * CLI. A service stays in memory and an activated socket waits for its start, so bin/burrow.js
 * loads this module's bundle (dist/bundle/service.js, scripts/bundle.mjs) instead of the CLI's
 * when the command line is one of these two: no commander, no CLI code, no other command's
 * modules. The routes load what they need on their first request.
 *
 * parseServiceArgs reads only the plain shapes of these command lines; for anything else (help,
 * an unknown or `--flag=value` option, a bad driver name) it gives undefined and the CLI parses
 * the line, with its usual help and errors. ts/cli/commands/service.ts runs the same functions.
 */
import { BurrowError, errorText, exitStatus, isBrokenPipe } from '../errors';
import { engineContext } from '../engine/context';
import type { GlobalOptions } from '../host/paths';

export interface ServiceOptions {
  /** `--time`: idle seconds before the service exits, as given (default '5'). */
  time: string;
  allowRemote?: boolean;
}

export type ServiceArgs = { globals: GlobalOptions } & ({ command: 'service'; uri?: string; opts: ServiceOptions } | { command: 'dial-stdio'; host?: string });

/** The global options' names, as the CLI's program has them (ts/cli/main.ts). */
const GLOBALS: Record<string, keyof GlobalOptions> = { '--root': 'root', '--runroot': 'runroot', '--storage-driver': 'storageDriver' };
const DRIVERS = ['overlay', 'fuse-overlayfs', 'copy'];

/**
 * `[GLOBAL OPTIONS] system service [-t|--time N] [--allow-remote] [URI]` or
 * `[GLOBAL OPTIONS] system dial-stdio [-H|--host URI]`; undefined for any other line.
 */
export function parseServiceArgs(argv: string[]): ServiceArgs | undefined {
  const globals: GlobalOptions = {};
  let i = 0;
  for (; i < argv.length && argv[i]!.startsWith('-'); i += 2) {
    const key = GLOBALS[argv[i]!];
    const value = argv[i + 1];
    if (!key || value === undefined || (key === 'storageDriver' && !DRIVERS.includes(value))) return undefined;
    globals[key] = value;
  }
  if (argv[i] !== 'system') return undefined;
  const command = argv[i + 1];
  const rest = argv.slice(i + 2);
  // Commander's parsing, for what is accepted here: an option's value is the next word, whatever
  // it is; the one argument is the first word that is no option.
  if (command === 'service') {
    const opts: ServiceOptions = { time: '5' };
    let uri: string | undefined;
    for (let j = 0; j < rest.length; j++) {
      const a = rest[j]!;
      if (a === '-t' || a === '--time') {
        if (j + 1 >= rest.length) return undefined;
        opts.time = rest[++j]!;
      } else if (a === '--allow-remote') opts.allowRemote = true;
      else if (a.startsWith('-') || uri !== undefined) return undefined;
      else uri = a;
    }
    return { globals, command, opts, ...(uri !== undefined ? { uri } : {}) };
  }
  if (command === 'dial-stdio') {
    if (rest.length === 0) return { globals, command };
    if (rest.length === 2 && (rest[0] === '-H' || rest[0] === '--host')) return { globals, command, host: rest[1]! };
    return undefined;
  }
  return undefined;
}

/** `burrow system service`: serves until idle or SIGTERM. */
export async function runService(globals: GlobalOptions, uri: string | undefined, opts: ServiceOptions): Promise<void> {
  const idle = Number(opts.time);
  if (!Number.isFinite(idle) || idle < 0) throw new BurrowError('EUSAGE', `invalid --time ${opts.time}: want a number of seconds (0: never exit)`);
  const ctx = engineContext(globals);
  const { Service, parseListen } = await import('./server');
  const listen = parseListen(uri, ctx.runRoot, !!opts.allowRemote);
  if (opts.allowRemote && listen.some((l) => l.kind === 'tcp')) process.stderr.write('WARNING: the API is served on a non-loopback address without TLS: anyone who can reach it can run containers as you\n');
  const service = await Service.create(ctx, { listen, idleSeconds: idle });
  await service.listen();
  // As sd_listen_fds(3) with unset_environment: the containers this service starts must not
  // think systemd passed them sockets.
  for (const k of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES']) delete process.env[k];
  // SIGTERM again while requests finish changes nothing (systemd may repeat it); a second
  // Ctrl-C is the user's way out of waiting.
  let interrupted = false;
  const stop = () => service.stop();
  const interrupt = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    service.stop();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', interrupt);
  if (process.env.BURROW_DEBUG) process.stderr.write(`burrow system service: listening on ${service.addresses().join(', ')}\n`);
  await service.done;
  // The service is over: nothing left (a watcher, a child's pipe) may keep the process. The
  // signal handlers stay: a SIGTERM now must not turn a clean exit into status 143.
  setTimeout(() => process.exit(), 1000).unref();
}

/** `burrow system dial-stdio`: stdin and stdout to the service's socket, starting a service when none listens. */
export async function runDialStdio(globals: GlobalOptions, host: string | undefined): Promise<void> {
  const ctx = engineContext(globals);
  const path = await import('node:path');
  const { dialTarget, dialService, relay } = await import('./dial');
  const sock = dialTarget(host, ctx.runRoot);
  const conn = await dialService(sock, { burrow: [process.execPath, process.argv[1]!], globalArgs: ctx.globalArgs, logFile: path.join(ctx.runRoot, 'service.log') });
  await relay(conn);
  process.stdin.destroy();
}

/** Runs a parsed command line as the CLI's main would: its exit status, errors in the CLI's voice. */
export async function main(args: ServiceArgs): Promise<number> {
  process.on('uncaughtException', (err) => {
    if (isBrokenPipe(err)) process.exit(0);
    process.stderr.write(errorText(err));
    if (process.env.BURROW_DEBUG && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exit(exitStatus(err));
  });
  try {
    if (args.command === 'service') await runService(args.globals, args.uri, args.opts);
    else await runDialStdio(args.globals, args.host);
    return 0;
  } catch (err) {
    if (isBrokenPipe(err)) return 0;
    process.stderr.write(errorText(err));
    if (process.env.BURROW_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return exitStatus(err);
  }
}
