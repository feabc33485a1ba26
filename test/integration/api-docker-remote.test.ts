/**
 * The docker CLI against a remote host over ssh: DOCKER_HOST=ssh://USER@127.0.0.1:PORT, where
 * the "remote" is an sshd the test runs itself (Debian's openssh-server: its own host key,
 * sshd_config, port on 127.0.0.1 and authorized key; root in the root run, the unprivileged test
 * user in the rootless run, without PAM). The CLI runs `ssh … docker system dial-stdio` there,
 * and the session's PATH starts with the docker compatibility command: `docker` that is burrow,
 * so that burrow's `system dial-stdio` relays to the service (api-clients.helpers.ts remoteEnv).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { checks, PEER, PODMAN_DEVIATIONS as DEV, show, startApi, type ApiPeer, type Result } from './api-clients.helpers';
import { startSshd } from '../harness/docker-clients.mjs';

interface Sshd {
  url: string;
  binDir: string;
  log(): string;
  stop(): Promise<void>;
}

let api: ApiPeer;
let sshd: Sshd;

beforeAll(async () => {
  api = await startApi('api-docker-remote');
  const dir = path.join(api.work, 'sshd');
  sshd = await startSshd(dir, { env: api.remoteEnv() });
}, 120_000);

afterAll(async () => {
  await sshd?.stop();
  await api?.dispose();
}, 120_000);

/** The docker CLI with DOCKER_HOST=ssh://…, our `ssh` (the test's key and known_hosts) on PATH. */
function remote(args: string[]): Promise<Result> {
  return api.docker(args, { env: api.clientEnv({ DOCKER_HOST: sshd.url }, [sshd.binDir]) });
}

const why = (r: Result): string => `${show(r)}\nsshd: ${sshd.log().slice(-1500)}\nservice: ${api.log().slice(-1500)}`;

describe(`docker -H ssh:// against ${PEER} through dial-stdio as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('docker version and ps reach the service on the remote end', async () => {
    const v = await remote(['version', '--format', '{{.Server.APIVersion}}']);
    expect(v.code, why(v)).toBe(0);
    expect(v.stdout.trim()).toBe('1.41');
    const ps = await remote(['ps', '-a', '--format', '{{.Names}}']);
    expect(ps.code, why(ps)).toBe(0);
  });

  it("run --rm: the container's output and exit status come back over ssh", async () => {
    const r = await remote(['run', '--rm', api.image, 'sh', '-c', 'echo over-ssh; hostname >/dev/null; exit 2']);
    expect(r.stdout, why(r)).toBe('over-ssh\n');
    if (checks(DEV.runRmExitStatus)) expect(r.code, why(r)).toBe(2);
    // What the remote end ran, as the remote user.
    expect(sshd.log()).toMatch(/Accepted publickey for \S+ from 127\.0\.0\.1/);
  });

  it('a container started over ssh is seen through the local socket, and the reverse', async () => {
    const d = await remote(['run', '-d', '--name', 'remote-c', api.image, 'sh', '-c', 'trap "exit 0" TERM; while :; do sleep 1; done']);
    expect(d.code, why(d)).toBe(0);
    const local = await api.docker(['ps', '--format', '{{.Names}}']);
    expect(local.stdout.split('\n'), show(local)).toContain('remote-c');
    const rm = await remote(['rm', '-f', 'remote-c']);
    expect(rm.code, why(rm)).toBe(0);
    const after = await api.docker(['ps', '-a', '--format', '{{.Names}}']);
    expect(after.stdout.split('\n')).not.toContain('remote-c');
    expect(fs.existsSync(api.sock)).toBe(true);
  });
});
