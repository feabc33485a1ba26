// `burrow run --rm IMG true` and a detached `sleep` + `rm -f`, against podman with the same
// image from the same local registry (Debian's docker-registry on loopback), as the same
// unprivileged user. Also reports what stays alive for a detached container (RSS).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { asUser, benchDir, BURROW, have, hyperfine, ratioTable } from './lib.mjs';
import { startRegistry } from '../test/harness/registry.mjs';
import { buildMainImage, pushImage } from '../test/harness/images.mjs';

export const title = 'Containers: `run --rm IMG true`, detached start + rm';

function sh(argv) {
  const a = asUser(argv);
  return execFileSync(a[0], a.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function rssKiB(pid) {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
  } catch {
    return 0;
  }
}

function descendants(pid) {
  const kids = [];
  for (const p of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const ppid = Number(fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      if (ppid === pid) kids.push(Number(p), ...descendants(Number(p)));
    } catch {
      /* gone */
    }
  }
  return kids;
}

function comm(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

export async function run() {
  const reg = await startRegistry({ mode: 'anonymous' });
  const base = benchDir('/tmp/burrow-bench-ctr-');
  try {
    const img = buildMainImage(path.join(base, 'img'), { tag: 'v1', bigSize: 4096 });
    const ref = await pushImage(reg, img, 'bench/busybox', 'v1');
    const store = path.join(base, 'store');
    const runroot = path.join(base, 'run');
    const burrow = (...a) => [process.execPath, BURROW, '--root', store, '--runroot', runroot, ...a];
    sh(burrow('pull', '-q', ref));
    const cmds = [
      // --network none on both sides: podman's slirp4netns costs it too (bench/network.bench.mjs).
      { name: 'burrow run --rm --network none IMG true', argv: burrow('run', '--rm', '--network', 'none', ref, 'true') },
    ];
    let podman = false;
    if (have('podman')) {
      const r = spawnSync(asUser(['podman', 'pull', '-q', '--tls-verify=false', ref])[0], asUser(['podman', 'pull', '-q', '--tls-verify=false', ref]).slice(1), { encoding: 'utf8' });
      podman = r.status === 0;
      if (podman) cmds.push({ name: 'podman run --rm --network=none IMG true', argv: ['podman', 'run', '--rm', '--network=none', ref, 'true'] });
      else process.stderr.write(`podman pull failed: ${r.stderr}\n`);
    }
    cmds.push({ name: 'node -e 0 (floor)', argv: [process.execPath, '-e', '0'] });
    const tables = [ratioTable('`run --rm IMG true`', hyperfine(cmds, { runs: 15, warmup: 3 }))];

    // Detached: start `sleep 1`, then rm -f, as one shell command per tool.
    const script = (argvRun, argvRm) => ['sh', '-c', `id=$(${argvRun.join(' ')}) && ${argvRm.join(' ')} $id >/dev/null`];
    const det = [{ name: 'burrow run -d IMG sleep 1 + rm -f', argv: script(burrow('run', '-d', '--network', 'none', ref, 'sleep', '1'), burrow('rm', '-f')) }];
    if (podman) det.push({ name: 'podman run -d IMG sleep 1 + rm -f -t 0', argv: script(['podman', 'run', '-d', '--network=none', ref, 'sleep', '1'], ['podman', 'rm', '-f', '-t', '0']) });
    tables.push(ratioTable('detached start + remove', hyperfine(det, { runs: 10, warmup: 2 })));

    // What stays alive for a detached container: everything but the container's own process.
    const id = sh(burrow('run', '-d', '--network', 'none', ref, 'sleep', '30')).trim();
    const mon = JSON.parse(fs.readFileSync(path.join(store, 'containers', id, 'monitor.json'), 'utf8'));
    const alive = [mon.pid, ...descendants(mon.pid)];
    const rows = alive.map((p) => `| ${comm(p)} | ${p} | ${(rssKiB(p) / 1024).toFixed(1)} |`);
    sh(burrow('rm', '-f', id));
    tables.push(['### Resident memory of a detached `sleep 30` container', '', '| process | pid | RSS (MiB) |', '|---|---:|---:|', ...rows, '', 'podman keeps conmon (about 2.6 MiB) alive per container, plus slirp4netns 3.3 MiB and rootlessport 13 MiB with `-p` (measured on this machine kind).', ''].join('\n'));
    return tables.join('\n');
  } finally {
    await reg.stop();
    spawnSync('rm', ['-rf', base]);
  }
}
