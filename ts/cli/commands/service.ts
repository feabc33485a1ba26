/**
 * `burrow system service`: the Docker Engine API for the docker CLI, docker-compose and the
 * Docker SDKs (ts/api); `burrow system dial-stdio`: the relay to it that `DOCKER_HOST=ssh://`
 * clients run on this host. Flags and messages only.
 */
import type { Command } from 'commander';
import { BurrowError } from '../../errors';
import { context } from '../context';

export function registerServiceCommands(system: Command): void {
  system
    .command('service')
    .description('serve the Docker Engine API (1.41) on a unix socket (default $XDG_RUNTIME_DIR/burrow/burrow.sock), a systemd socket (fd://) or loopback TCP')
    .argument('[uri]', 'unix:///PATH, tcp://127.0.0.1:PORT or fd://')
    .option('-t, --time <seconds>', 'exit after this many idle seconds; 0: never', '5')
    .option('--allow-remote', 'allow a tcp:// address that is not loopback (anyone who reaches it can run containers as you)')
    .action(async (uri: string | undefined, opts: { time: string; allowRemote?: boolean }, cmd: Command) => {
      const idle = Number(opts.time);
      if (!Number.isFinite(idle) || idle < 0) throw new BurrowError('EUSAGE', `invalid --time ${opts.time}: want a number of seconds (0: never exit)`);
      const ctx = context(cmd);
      const { Service, parseListen } = await import('../../api/server');
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
    });

  system
    .command('dial-stdio')
    .description('relay stdin and stdout to the API service (what DOCKER_HOST=ssh:// clients run on this host), starting the service when none listens')
    .option('-H, --host <uri>', 'the service socket, unix:///PATH (default: $DOCKER_HOST, else the default socket)')
    .action(async (opts: { host?: string }, cmd: Command) => {
      const ctx = context(cmd);
      const path = await import('node:path');
      const { dialTarget, dialService, relay } = await import('../../api/dial');
      const sock = dialTarget(opts.host, ctx.runRoot);
      const conn = await dialService(sock, { burrow: [process.execPath, process.argv[1]!], globalArgs: ctx.globalArgs, logFile: path.join(ctx.runRoot, 'service.log') });
      await relay(conn);
      process.stdin.destroy();
    });
}
