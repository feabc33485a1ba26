/**
 * The OCI spec the CLI writes, for a set of flag combinations, against committed snapshots
 * (test/integration/__snapshots__/spec/*.json, one per combination and role: root and rootless
 * get different id maps and defaults). A change to what `create` writes shows up as a diff of a
 * snapshot to review, not as a silent change in what the runtime is asked to do. What varies from
 * run to run (ids, the test's directories, the user's own ids and subordinate ranges) is replaced
 * by a placeholder before the comparison; everything else is compared as written.
 * To refresh after a deliberate change: delete the snapshot files and run this file as root and
 * as the test user (vitest writes missing snapshots outside CI).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { IMAGE, setup, type Env } from './lifecycle.helpers';

const role = IS_ROOT ? 'root' : 'rootless';

const combos: Record<string, string[]> = {
  defaults: [],
  'user-workdir-env': ['-u', '1:1', '-w', '/tmp', '-e', 'A=1', '--env', 'B=two words', '--entrypoint', '/bin/echo', '--hostname', 'box'],
  'tty-interactive': ['-t', '-i'],
  'read-only-tmpfs': ['--read-only', '--tmpfs', '/scratch:size=1m,mode=1777', '-v', '/etc/hostname:/host-hostname:ro'],
  'caps-seccomp': ['--cap-drop', 'ALL', '--cap-add', 'NET_BIND_SERVICE', '--security-opt', 'no-new-privileges', '--security-opt', 'seccomp=unconfined'],
  privileged: ['--privileged'],
  'ulimits-stop-signal': ['--ulimit', 'nofile=512:1024', '--stop-signal', 'SIGINT', '--label', 'k=v', '--add-host', 'db:10.1.2.3', '--dns', '192.0.2.53'],
  'userns-keep-id-init': ['--userns', 'keep-id', '--init', '--group-add', 'keep-groups'],
};

let env: Env;
beforeAll(() => {
  env = setup('spec-snap');
});
afterAll(() => env?.dispose());

/** Replaces what differs between runs and hosts with placeholders. */
function normalize(text: string, id: string): string {
  const uid = process.getuid!();
  const gid = process.getgid!();
  let s = text.split(env.work).join('<WORK>').split(id).join('<ID>').split(id.slice(0, 12)).join('<SHORTID>');
  s = s.replace(/\/tmp\/burrow-run-\d+|\/run\/user\/\d+|\/tmp\/burrow-xdg-\d+/g, '<XDG_RUNTIME_DIR>');
  // The test image is made afresh by each run (new mtimes, new digests).
  s = s.replace(/[0-9a-f]{64}/g, '<DIGEST>');
  s = s.replace(/\/usr\/bin\/tini-static|\/usr\/libexec\/podman\/catatonit|\/usr\/bin\/catatonit/g, '<INIT>');
  const spec = JSON.parse(s) as Record<string, unknown> & { linux?: Record<string, unknown>; process?: Record<string, unknown> };
  const lin = spec.linux ?? {};
  // The user's own ids and subordinate ranges come from the host: keep the shape, not the numbers.
  const maps = (m: unknown) =>
    (m as { containerID: number; hostID: number; size: number }[] | undefined)?.map((e) => ({
      containerID: e.containerID === uid || e.containerID === gid ? '<SELF>' : e.containerID,
      hostID: e.hostID === uid || e.hostID === gid ? '<SELF>' : '<SUBORDINATE>',
      size: e.hostID === uid || e.hostID === gid ? e.size : '<RANGE>',
    }));
  if (lin.uidMappings) lin.uidMappings = maps(lin.uidMappings);
  if (lin.gidMappings) lin.gidMappings = maps(lin.gidMappings);
  // The process's ids under keep-id are the user's own.
  const user = spec.process?.user as { uid: number; gid: number; additionalGids?: number[] } | undefined;
  if (user && uid !== 0) {
    if (user.uid === uid) (user as Record<string, unknown>).uid = '<SELF>';
    if (user.gid === gid) (user as Record<string, unknown>).gid = '<SELF>';
    if (user.additionalGids) (user as Record<string, unknown>).additionalGids = '<SUPPLEMENTARY>';
  }
  // The default open-files limit is the caller's own (as Docker's daemon passes its own on).
  const [soft, hard] = /^Max open files\s+(\d+)\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'))!.slice(1).map(Number);
  for (const l of (spec.process?.rlimits ?? []) as { type: string; soft: number | string; hard: number | string }[]) {
    if (l.type === 'RLIMIT_NOFILE' && l.soft === soft && l.hard === hard) Object.assign(l, { soft: '<CALLER_SOFT>', hard: '<CALLER_HARD>' });
  }
  // cgroupsPath names the caller's own cgroup on v2 hosts; its presence is what matters.
  if (typeof lin.cgroupsPath === 'string') lin.cgroupsPath = '<CGROUP>';
  return `${JSON.stringify(spec, null, 2)}\n`;
}

describe('the OCI spec `burrow create` writes', () => {
  it.each(Object.keys(combos))('%s', async (name) => {
    const r = env.b(['create', '--network', 'none', '--name', `snap-${name}`, ...combos[name]!, IMAGE, 'sh', '-c', 'true']);
    expect(r.code, r.stderr).toBe(0);
    const id = r.stdout.trim();
    const spec = fs.readFileSync(path.join(env.store, 'containers', id, 'bundle', 'config.json'), 'utf8');
    await expect(normalize(spec, id)).toMatchFileSnapshot(path.join(__dirname, '__snapshots__', 'spec', `${name}.${role}.json`));
    expect(env.b(['rm', id]).code).toBe(0);
  });
});
