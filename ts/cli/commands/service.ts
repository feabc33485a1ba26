/**
 * `burrow system service`: the Docker Engine API for the docker CLI, docker-compose and the
 * Docker SDKs (ts/api); `burrow system dial-stdio`: the relay to it that `DOCKER_HOST=ssh://`
 * clients run on this host. Flags only: both run ts/api/main.ts's functions, which
 * bin/burrow.js also reaches without the CLI for the plain shapes of these command lines.
 */
import type { Command } from 'commander';
import type { GlobalOptions } from '../../host/paths';

const globals = (cmd: Command): GlobalOptions => cmd.optsWithGlobals<GlobalOptions>();

export function registerServiceCommands(system: Command): void {
  system
    .command('service')
    .description('serve the Docker Engine API (1.41) on a unix socket (default $XDG_RUNTIME_DIR/burrow/burrow.sock), a systemd socket (fd://) or loopback TCP')
    .argument('[uri]', 'unix:///PATH, tcp://127.0.0.1:PORT or fd://')
    .option('-t, --time <seconds>', 'exit after this many idle seconds; 0: never', '5')
    .option('--allow-remote', 'allow a tcp:// address that is not loopback (anyone who reaches it can run containers as you)')
    .action(async (uri: string | undefined, opts: { time: string; allowRemote?: boolean }, cmd: Command) => {
      const { runService } = await import('../../api/main');
      await runService(globals(cmd), uri, opts);
    });

  system
    .command('dial-stdio')
    .description('relay stdin and stdout to the API service (what DOCKER_HOST=ssh:// clients run on this host), starting the service when none listens')
    .option('-H, --host <uri>', 'the service socket, unix:///PATH (default: $DOCKER_HOST, else the default socket)')
    .action(async (opts: { host?: string }, cmd: Command) => {
      const { runDialStdio } = await import('../../api/main');
      await runDialStdio(globals(cmd), opts.host);
    });
}
