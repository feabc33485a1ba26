/**
 * `healthcheck run CONTAINER` (podman's): one probe now; as podman 4.3 answers, silent with exit
 * 0 when it passed, `unhealthy` and exit 1 when it failed, 125 without a healthcheck or when the
 * container is not running.
 */
import type { Command } from 'commander';
import { context } from '../context';

type SetExit = (code: number) => void;

export function registerHealthcheckCommands(program: Command, setExit: SetExit): void {
  const hc = program.command('healthcheck').description("run a container's healthcheck");
  hc.command('run')
    .description("run the container's healthcheck now (recorded as any other probe): exit 0 when it passes, else prints unhealthy and exits 1")
    .argument('<container>', 'a running container with a healthcheck')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const { runHealthcheck } = await import('../../engine/health');
      const r = await runHealthcheck(context(cmd), name);
      if (r.result === 'unhealthy') {
        process.stdout.write('unhealthy\n');
        setExit(1);
      }
    });
}
