// burrow-runtime vs runc vs crun: `run` of the same rootless busybox bundle running `true`.
// crun 1.8 refuses this hybrid-cgroup host, so it runs inside a mount namespace that hides
// /sys/fs/cgroup/unified (bench/peers/README.md); that wrapper's own cost is measured and
// reported beside it so the ratio can be read both ways.
import fs from 'node:fs';
import path from 'node:path';
import { benchDir, benchUser, have, hyperfine, peerBundle, ratioTable } from './lib.mjs';
import { RUNTIME } from '../test/harness/bundle.mjs';

export const title = 'OCI runtime: run a busybox container (`true`)';

export function run() {
  const u = benchUser();
  const base = benchDir('/tmp/burrow-bench-rt-'); // the runtimes create their state directories in it
  const mk = (name, hostUid, hostGid) =>
    peerBundle(path.join(base, name), hostUid, hostGid, (c) => {
      c.root.readonly = true;
    });
  const uid = u ? u.uid : process.getuid();
  const gid = u ? u.gid : process.getgid();
  const direct = mk('direct', uid, gid);
  // Inside `unshare -r`, the user is root: map container root to 0 there.
  const nested = mk('nested', 0, 0);
  const stateDir = (n) => path.join(base, `state-${n}`);
  const cmds = [{ name: 'burrow-runtime run', argv: [RUNTIME, '--root', stateDir('burrow'), 'run', '--bundle', direct, 'b'] }];
  if (have('runc')) cmds.push({ name: 'runc run', argv: ['runc', '--root', stateDir('runc'), 'run', '--bundle', direct, 'r'] });
  const hide = 'mount -t tmpfs none /sys/fs/cgroup/unified';
  if (have('crun')) {
    cmds.push({ name: 'crun run (in wrapper)', argv: ['unshare', '-rm', 'sh', '-c', `${hide} && exec crun --root ${stateDir('crun')} run --bundle ${nested} c`] });
    cmds.push({ name: 'wrapper alone (unshare -rm + mount)', argv: ['unshare', '-rm', 'sh', '-c', `${hide} && exec true`] });
  }
  cmds.push({ name: 'unshare -r true (floor)', argv: ['unshare', '-r', 'true'] });
  const rows = hyperfine(cmds, { runs: 40, warmup: 5 });
  const crun = rows.find((r) => r.name.startsWith('crun'));
  const wrap = rows.find((r) => r.name.startsWith('wrapper'));
  let note = '';
  if (crun && wrap) {
    const net = crun.median - wrap.median;
    note = `crun net of its wrapper: ${net.toFixed(1)} ms median; burrow-runtime / crun(net) = ${(rows[0].median / net).toFixed(2)}×, burrow-runtime / crun(with wrapper) = ${(rows[0].median / crun.median).toFixed(2)}×.`;
  }
  fs.rmSync(base, { recursive: true, force: true });
  return ratioTable('`run` of `true` (rootless, pid/ipc/uts/mount/cgroup/user namespaces, read-only rootfs)', rows, note);
}
