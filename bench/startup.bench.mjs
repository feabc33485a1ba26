// Start-up: `burrow --version` and `burrow info` against `podman --version` and `podman info`.
import { BURROW, have, hyperfine, ratioTable } from './lib.mjs';

export const title = 'CLI start-up';

export function run() {
  const node = process.execPath;
  const tables = [];
  const version = [{ name: 'burrow --version', argv: [node, BURROW, '--version'] }];
  if (have('podman')) version.push({ name: 'podman --version', argv: ['podman', '--version'] });
  version.push({ name: 'node -e 0 (floor)', argv: [node, '-e', '0'] });
  tables.push(ratioTable('`--version`', hyperfine(version)));

  const info = [{ name: 'burrow info', argv: [node, BURROW, 'info', '--format', 'json'] }];
  if (have('podman')) info.push({ name: 'podman info', argv: ['podman', 'info', '--format', 'json'] });
  tables.push(ratioTable('`info`', hyperfine(info, { runs: 10, warmup: 2 }), 'burrow info runs every probe each time, including a user-namespace and overlay mount test in a child process.'));
  return tables.join('\n');
}
