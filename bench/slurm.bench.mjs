// Slurm 22.05: `srun --container=BUNDLE true` with burrow-runtime against the same with runc
// (Debian's 1.1, rootless), and crun where it runs, through one two-node test cluster
// (test/harness/slurm.mjs) and the same rootless busybox bundle, as the unprivileged test user.
// oci.conf uses RunTimeRun (SchedMD's suggestion) for each runtime; slurmstepd reads oci.conf
// at every step, so each timed command is preceded (hyperfine --prepare, not timed) by copying
// its runtime's oci.conf into place. crun 1.8 refuses this hybrid-cgroup host, so it runs
// inside a wrapper that hides /sys/fs/cgroup/unified (as in runtime.bench.mjs); the wrapper's
// own cost is measured beside it. `srun hostname` without a container is the floor: what
// Slurm itself costs.
import fs from 'node:fs';
import path from 'node:path';
import { benchUser, have, hyperfine, peerBundle, ratioTable } from './lib.mjs';
import { RUNTIME } from '../test/harness/bundle.mjs';
import { ociConf, slurmUnavailable, startSlurm } from '../test/harness/slurm.mjs';

export const title = 'Slurm: `srun --container=BUNDLE true` (rootless, RunTimeRun)';

export async function run() {
  const why = slurmUnavailable();
  if (why) return `skipped: ${why}\n`;
  if (!have('runc')) return 'skipped: runc is not installed (.ci/setup installs it)\n';
  const u = benchUser();
  const base = fs.mkdtempSync('/tmp/burrow-bench-slurm-');
  fs.chmodSync(base, 0o755);
  const roots = path.join(base, 'runtime');
  fs.mkdirSync(roots);
  fs.chmodSync(roots, 0o1777);
  const mk = (name, hostUid, hostGid) =>
    peerBundle(path.join(base, name), hostUid, hostGid, (c) => {
      // Slurm's containers use the node's network and hostname.
      c.linux.namespaces = c.linux.namespaces.filter((n) => !['network', 'uts'].includes(n.type));
      delete c.hostname;
    });
  const direct = mk('bundle', u.uid, u.gid);
  // Inside the crun wrapper's `unshare -r`, the user is root: map container root to 0 there.
  const nested = mk('bundle-nested', 0, 0);

  const confs = {
    burrow: ociConf(RUNTIME, path.join(roots, 'burrow-%u')),
    runc: ociConf('/usr/sbin/runc', path.join(roots, 'runc-%u')),
  };
  const crun = have('crun');
  if (crun) {
    const wrap = path.join(base, 'crun-wrapped');
    fs.writeFileSync(wrap, '#!/bin/sh\n# crun 1.8 refuses the hybrid cgroup layout: hide cgroup2 in a private mount namespace.\nexec unshare -rm sh -c \'mount -t tmpfs none /sys/fs/cgroup/unified && exec crun "$@"\' sh "$@"\n', { mode: 0o755 });
    confs.crun = ociConf(wrap, path.join(roots, 'crun-%u'));
  }
  let cluster;
  try {
    cluster = await startSlurm(path.join(base, 'cluster'), { oci: confs.burrow });
    // The bench user copies each runtime's oci.conf into place before its runs.
    fs.chownSync(cluster.ociPath, u.uid, u.gid);
    const files = {};
    for (const [k, text] of Object.entries(confs)) {
      files[k] = path.join(base, `oci-${k}.conf`);
      fs.writeFileSync(files[k], text, { mode: 0o644 });
    }
    const prep = (k) => ['cp', files[k], cluster.ociPath];
    const srun = (bundle, cmd = ['true']) => ['srun', `--container=${bundle}`, ...cmd];
    const cmds = [
      { name: 'srun --container (burrow-runtime)', argv: srun(direct), prepare: prep('burrow') },
      { name: 'srun --container (runc)', argv: srun(direct), prepare: prep('runc') },
    ];
    if (crun) cmds.push({ name: 'srun --container (crun, in wrapper)', argv: srun(nested), prepare: prep('crun') });
    cmds.push({ name: 'srun true (no container: the floor)', argv: ['srun', 'true'], prepare: prep('burrow') });
    const rows = hyperfine(cmds, { runs: 20, warmup: 3, prefix: ['nsenter', `--net=/proc/${cluster.ns.ctl}/ns/net`], env: { SLURM_CONF: cluster.conf } });
    const floor = rows.at(-1).median;
    const net = (r) => (r.median - floor).toFixed(1);
    const r0 = rows[0];
    const runc = rows[1];
    let note = `Above the floor (Slurm's own step launch): burrow-runtime ${net(r0)} ms, runc ${net(runc)} ms`;
    if (crun) note += `, crun ${net(rows[2])} ms including its wrapper (\`unshare -rm\` + a mount, around every crun command: see the OCI runtime section for the wrapper alone)`;
    note += `. burrow-runtime / runc = ${(r0.median / runc.median).toFixed(2)}× (whole srun), ${((r0.median - floor) / (runc.median - floor)).toFixed(2)}× (above the floor)`;
    if (crun) note += `; burrow-runtime / crun = ${(r0.median / rows[2].median).toFixed(2)}× (whole srun), ${((r0.median - floor) / (rows[2].median - floor)).toFixed(2)}× (above the floor)`;
    note += ". Above the floor: Slurm writes the step's config.json, runs RunTimeRun, and calls the runtime again after it (RunTimeQuery).";
    return ratioTable('`srun --container=BUNDLE true`, two-node test cluster, jobs as the unprivileged user', rows, note);
  } finally {
    if (cluster) await cluster.stop();
    fs.rmSync(base, { recursive: true, force: true });
  }
}
