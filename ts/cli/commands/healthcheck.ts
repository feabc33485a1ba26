/** `healthcheck run CONTAINER` (podman's): one probe now; exit 0 healthy, 1 unhealthy, 125 no healthcheck or not running. */
import type { Command } from 'commander';
import { context } from '../context';

type SetExit = (code: number) => void;

export function registerHealthcheckCommands(program: Command, setExit: SetExit): void {
  const hc = program.command('healthcheck').description("run a container's healthcheck");
  hc.command('run')
    .description("run the container's healthcheck now (recorded as any other probe): prints healthy (exit 0) or unhealthy (exit 1)")
    .argument('<container>', 'a running container with a healthcheck')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const { runHealthcheck } = await import('../../engine/health');
      const r = await runHealthcheck(context(cmd), name);
      process.stdout.write(`${r.result}\n`);
      setExit(r.result === 'healthy' ? 0 : 1);
    });
}
