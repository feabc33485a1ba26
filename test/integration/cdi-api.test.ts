/**
 * CDI devices and the host namespaces through the Engine API, driven by the real docker CLI
 * (Debian's docker.io 20.10): `docker run --gpus all` sends a DeviceRequest with the gpu
 * capability, which the service maps to nvidia.com/gpu=all from the spec directory it was
 * started with (BURROW_CDI_SPEC_DIRS); without such a spec the client shows the service's
 * error naming nvidia-ctk; `--pid host --ipc host` share the host's namespaces. As root and as
 * the unprivileged test user.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { IMAGE, setup, type Env } from './lifecycle.helpers';
import { startService, type Service } from './api.helpers';
import { dockerCli } from '../harness/docker-clients.mjs';

let env: Env;
let withSpec: Service;
let without: Service;
const T = { timeout: 120_000 };

beforeAll(async () => {
  env = setup('cdi-api');
  const specs = path.join(env.work, 'cdi');
  fs.mkdirSync(specs);
  fs.writeFileSync(
    path.join(specs, 'nvidia.json'),
    JSON.stringify({ cdiVersion: '0.5.0', kind: 'nvidia.com/gpu', containerEdits: { env: ['NVIDIA_VISIBLE_DEVICES=void'] }, devices: [{ name: '0', containerEdits: { deviceNodes: [{ path: '/dev/nvidia0', hostPath: '/dev/null' }] } }] }),
  );
  withSpec = await startService(env, { sock: path.join(env.work, 'with.sock'), time: 0, envVars: { BURROW_CDI_SPEC_DIRS: specs } });
  without = await startService(env, { sock: path.join(env.work, 'without.sock'), time: 0, envVars: { BURROW_CDI_SPEC_DIRS: path.join(env.work, 'empty') } });
}, 120_000);

afterAll(async () => {
  await withSpec?.stop();
  await without?.stop();
  env?.dispose();
}, 120_000);

function docker(svc: Service, args: string[]): { code: number; stdout: string; stderr: string } {
  const config = path.join(env.work, 'docker-config');
  fs.mkdirSync(config, { recursive: true });
  const r = spawnSync(dockerCli() as string, args, { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: env.work, DOCKER_HOST: svc.host, DOCKER_CONFIG: config }, timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? 137, stdout: r.stdout, stderr: r.stderr };
}

describe(`CDI through the Engine API with the docker CLI, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('docker run --gpus all: the nvidia.com/gpu spec applied; without one, the error names nvidia-ctk cdi generate', T, () => {
    const r = docker(withSpec, ['run', '--rm', '--gpus', 'all', IMAGE, 'sh', '-c', 'ls /dev/nvidia0 && echo $NVIDIA_VISIBLE_DEVICES']);
    expect([r.code, r.stdout], `${r.stderr}\n${withSpec.stderr()}`).toEqual([0, '/dev/nvidia0\nvoid\n']);
    const none = docker(without, ['run', '--rm', '--gpus', 'all', IMAGE, 'true']);
    expect(none.code).toBe(125);
    expect(none.stderr).toContain('no CDI spec of kind nvidia.com/gpu');
    expect(none.stderr).toContain('nvidia-ctk cdi generate');
  });

  it("docker run --pid host --ipc host: the host's namespaces", T, () => {
    const r = docker(withSpec, ['run', '--rm', '--pid', 'host', '--ipc', 'host', IMAGE, 'sh', '-c', 'readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc']);
    expect([r.code, r.stdout], r.stderr).toEqual([0, `${fs.readlinkSync('/proc/self/ns/pid')}\n${fs.readlinkSync('/proc/self/ns/ipc')}\n`]);
  });
});
