// Start-up: `burrow --version` and `burrow info` against `podman --version` and `podman info`,
// and what bin/burrow.js's code cache saves on loading the CLI.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BURROW, benchUser, have, hyperfine, ratioTable } from './lib.mjs';

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

  // Loading the CLI: `images -q` on an empty store, with the V8 code cache that bin/burrow.js keeps
  // in XDG_CACHE_HOME (written by the warm-up runs), and without one (nothing can be read or
  // written under /dev/null): the difference is parsing and compiling the bundle every time.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-bench-startup-'));
  const u = benchUser();
  if (u) fs.chownSync(dir, u.uid, u.gid);
  try {
    const images = (cache) => ['env', `XDG_CACHE_HOME=${cache}`, node, BURROW, '--root', path.join(dir, 'store'), '--runroot', path.join(dir, 'run'), 'images', '-q'];
    const load = [
      { name: 'burrow images -q (code cache)', argv: images(path.join(dir, 'cache')) },
      { name: 'burrow images -q (no code cache)', argv: images('/dev/null') },
      { name: 'node -e 0 (floor)', argv: ['env', node, '-e', '0'] },
    ];
    tables.push(ratioTable('loading the CLI: `images -q`, empty store', hyperfine(load)));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return tables.join('\n');
}
