/**
 * CDI devices (issue 18): `burrow run --device VENDOR/CLASS=NAME` and `--gpus` with specs this
 * test writes into a directory of its own (BURROW_CDI_SPEC_DIRS, and the config file's
 * cdi_spec_dirs): a device node that exists here (/dev/null, seen as /dev/fakegpu0 inside), a
 * directory with a real shared library built by the host's gcc, mounted and then found by the
 * container's `ldconfig -p` (Debian's minbase image of the build tests: busybox has no
 * ldconfig), environment variables, and hooks that write files on the host (createContainer and
 * poststop). JSON and YAML; `=all`; `--gpus` with and without an nvidia.com/gpu spec; the
 * errors (unknown device, malformed spec, conflicting specs, a missing device node) and that
 * they leave nothing behind; the config.json burrow writes (edits and the cdi.k8s.io
 * annotation); burrow-runtime run directly on a bundle written as another engine writes one
 * (CDI annotations, edits already applied). As root and as the unprivileged test user.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { burrow, IS_ROOT, type Run } from './helpers';
import { setup, waitFor, type Env } from './lifecycle.helpers';
import { baseImage } from '../harness/base-images.mjs';
import { makeBundle, RUNTIME } from '../harness/bundle.mjs';

let env: Env;
let debian: string;
let libs: string;
let hookDir: string;
const T = { timeout: 120_000 };

beforeAll(() => {
  env = setup('cdi');
  const img = baseImage('minbase') as { name: string; archive: string };
  const load = env.b(['load', '-i', img.archive], { timeout: 300_000 });
  if (load.code !== 0) throw new Error(`load: ${load.stderr}`);
  debian = img.name;
  // A real shared object with a soname: ldconfig lists only ELF libraries.
  libs = path.join(env.work, 'fakelibs');
  fs.mkdirSync(libs, { recursive: true });
  const src = path.join(env.work, 'fakegpu.c');
  fs.writeFileSync(src, 'int fake_gpu_answer(void) { return 42; }\n');
  const cc = spawnSync('gcc', ['-shared', '-fPIC', '-Wl,-soname,libfakegpu.so.1', '-o', path.join(libs, 'libfakegpu.so.1'), src], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) throw new Error(`gcc (run .ci/setup: apt-get install gcc libc6-dev): ${cc.error?.message ?? cc.stderr}`);
  hookDir = path.join(env.work, 'hooks-ran');
  fs.mkdirSync(hookDir);
  // Hooks run as the container's root: with --userns keep-id (--hpc) rootless, a subordinate id.
  fs.chmodSync(hookDir, 0o777);
}, 600_000);
afterEach(() => env.cleanup());
afterAll(() => env?.dispose());

let n = 0;
/** A fresh spec directory with these files (name → text). */
function specDir(files: Record<string, string>): string {
  const dir = path.join(env.work, `specs-${++n}`);
  fs.mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}

const run = (dirs: string, args: string[], extra: Record<string, string> = {}): Run =>
  burrow(['--root', env.store, '--runroot', env.runroot, ...args], { env: { BURROW_CDI_SPEC_DIRS: dirs, ...extra } });

/** The fake vendor's spec: device gpu0 (/dev/null as /dev/fakegpu0, the libraries, hooks), gpu1 (/dev/zero). */
function fakeSpec(tag: string): object {
  return {
    cdiVersion: '0.6.0',
    kind: 'example.com/fake',
    containerEdits: { env: ['FAKE_COMMON=yes'] },
    devices: [
      {
        name: 'gpu0',
        containerEdits: {
          deviceNodes: [{ path: '/dev/fakegpu0', hostPath: '/dev/null' }],
          env: ['FAKE_GPU=gpu0'],
          mounts: [{ hostPath: libs, containerPath: '/opt/fake/lib', options: ['ro', 'nosuid', 'nodev', 'bind'] }],
          hooks: [
            { hookName: 'createContainer', path: '/bin/sh', args: ['sh', '-c', `echo created > ${hookDir}/${tag}-create`] },
            { hookName: 'poststop', path: '/bin/sh', args: ['sh', '-c', `echo stopped > ${hookDir}/${tag}-poststop`] },
          ],
        },
      },
      { name: 'gpu1', containerEdits: { deviceNodes: [{ path: '/dev/fakegpu1', hostPath: '/dev/zero' }], env: ['FAKE_GPU1=gpu1'] } },
    ],
  };
}

/** The same spec in YAML, in the shape nvidia-ctk writes (sequences at their key's indentation). */
function fakeYaml(tag: string): string {
  return `---
cdiVersion: 0.6.0
kind: example.com/fake
containerEdits:
  env:
  - FAKE_COMMON=yes
devices:
- name: gpu0
  containerEdits:
    deviceNodes:
    - path: /dev/fakegpu0
      hostPath: /dev/null
    env:
    - FAKE_GPU=gpu0
    mounts:
    - hostPath: ${libs}
      containerPath: /opt/fake/lib
      options: [ro, nosuid, nodev, bind]
    hooks:
    - hookName: createContainer
      path: /bin/sh
      args: ["sh", "-c", "echo created > ${hookDir}/${tag}-create"]
    - hookName: poststop
      path: /bin/sh
      args:
      - sh
      - -c
      - echo stopped > ${hookDir}/${tag}-poststop
- name: gpu1
  containerEdits:
    deviceNodes:
    - {path: /dev/fakegpu1, hostPath: /dev/zero}
    env: [FAKE_GPU1=gpu1]
`;
}

const PROBE = 'ls -l /dev/fakegpu0 /dev/fakegpu1 2>&1; env | grep ^FAKE | sort; ldconfig -p | grep fakegpu; echo written > /dev/fakegpu0 && echo node-ok';

function expectGpu0(r: Run): void {
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/^crw-rw-rw- .* 1, 3 .* \/dev\/fakegpu0$/m);
  expect(r.stdout).toContain('FAKE_COMMON=yes\nFAKE_GPU=gpu0\n');
  expect(r.stdout).toMatch(/libfakegpu\.so\.1 \(libc6,x86-64\) => \/opt\/fake\/lib\/libfakegpu\.so\.1/);
  expect(r.stdout).toContain('node-ok');
}

describe(`CDI devices, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('a JSON spec: the device node, the spec-wide and device env, the library found by ldconfig -p, the createContainer and poststop hooks on the host', T, () => {
    const dir = specDir({ 'fake.json': JSON.stringify(fakeSpec('json')) });
    const r = run(dir, ['run', '--rm', '--device', 'example.com/fake=gpu0', debian, 'sh', '-c', PROBE]);
    expectGpu0(r);
    expect(r.stdout).toMatch(/\/dev\/fakegpu1'?: No such file/);
    expect(fs.readFileSync(path.join(hookDir, 'json-create'), 'utf8')).toBe('created\n');
    expect(fs.readFileSync(path.join(hookDir, 'json-poststop'), 'utf8')).toBe('stopped\n');
    // The library directory is in the image's loader configuration too: a later ldconfig keeps it.
    const again = run(dir, ['run', '--rm', '--device', 'example.com/fake=gpu0', debian, 'sh', '-c', 'cat /etc/ld.so.conf.d/000-burrow-cdi.conf; ldconfig && ldconfig -p | grep -c fakegpu']);
    expect([again.code, again.stdout], again.stderr).toEqual([0, '/opt/fake/lib\n1\n']);
  });

  it('with --hpc (your own uid inside, the host namespaces): the same node, library, env and hooks', T, () => {
    const dir = specDir({ 'fake.json': JSON.stringify(fakeSpec('hpc')) });
    const r = run(dir, ['run', '--rm', '--hpc', '--device', 'example.com/fake=gpu0', debian, 'sh', '-c', `echo uid=$(id -u); ${PROBE}`]);
    expectGpu0(r);
    expect(r.stdout).toContain(`uid=${process.getuid!()}\n`);
    expect(fs.readFileSync(path.join(hookDir, 'hpc-create'), 'utf8')).toBe('created\n');
    expect(fs.readFileSync(path.join(hookDir, 'hpc-poststop'), 'utf8')).toBe('stopped\n');
  });

  it('detached (through the monitor): a poststart hook runs with the running state; exec sees the device env and library, rm -f runs the poststop hook', T, () => {
    // The monitor (burrow-monitor) has no spec parser: it asks burrow-runtime for the poststart
    // hooks (`poststart`) and for the end (`delete`, which runs poststop).
    const spec = fakeSpec('detached') as { devices: { containerEdits: { hooks?: object[] } }[] };
    spec.devices[0]!.containerEdits.hooks!.push({ hookName: 'poststart', path: '/bin/sh', args: ['sh', '-c', `cat > ${hookDir}/detached-poststart.tmp && mv ${hookDir}/detached-poststart.tmp ${hookDir}/detached-poststart`] });
    const dir = specDir({ 'fake.json': JSON.stringify(spec) });
    const d = run(dir, ['run', '-d', '--device', 'example.com/fake=gpu0', debian, 'sleep', '60']);
    expect(d.code, d.stderr).toBe(0);
    const id = d.stdout.trim();
    expect(fs.readFileSync(path.join(hookDir, 'detached-create'), 'utf8')).toBe('created\n');
    // After the monitor's answer: the hook runs once the container's program does.
    waitFor(() => fs.existsSync(path.join(hookDir, 'detached-poststart')), 30_000, 'the poststart hook');
    expect(JSON.parse(fs.readFileSync(path.join(hookDir, 'detached-poststart'), 'utf8'))).toMatchObject({ id, status: 'running' });
    const e = env.b(['exec', id, 'sh', '-c', 'echo $FAKE_GPU; ldconfig -p | grep -c libfakegpu; test -c /dev/fakegpu0 && echo node']);
    expect([e.code, e.stdout], e.stderr).toEqual([0, 'gpu0\n1\nnode\n']);
    expect(fs.existsSync(path.join(hookDir, 'detached-poststop'))).toBe(false);
    expect(env.b(['rm', '-f', id]).code).toBe(0);
    expect(fs.readFileSync(path.join(hookDir, 'detached-poststop'), 'utf8')).toBe('stopped\n');
  });

  it('the same spec in YAML, and VENDOR/CLASS=all: every device of the kind', T, () => {
    const dir = specDir({ 'fake.yaml': fakeYaml('yaml') });
    const r = run(dir, ['run', '--rm', '--device', 'example.com/fake=all', debian, 'sh', '-c', PROBE]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/1, 3 .* \/dev\/fakegpu0$/m);
    expect(r.stdout).toMatch(/1, 5 .* \/dev\/fakegpu1$/m);
    expect(r.stdout).toContain('FAKE_COMMON=yes\nFAKE_GPU1=gpu1\nFAKE_GPU=gpu0\n');
    expect(r.stdout).toContain('libfakegpu.so.1');
    expect(fs.readFileSync(path.join(hookDir, 'yaml-create'), 'utf8')).toBe('created\n');
  });

  it("create writes the edits and the cdi.k8s.io annotation into config.json; the config file's cdi_spec_dirs is read", T, () => {
    const dir = specDir({ 'fake.json': JSON.stringify(fakeSpec('create')) });
    const cfgFile = path.join(env.work, 'cdi-config.toml');
    fs.writeFileSync(cfgFile, `[containers]\ncdi_spec_dirs = ["${dir}"]\n`);
    const c = burrow(['--root', env.store, '--runroot', env.runroot, 'create', '--device', 'example.com/fake=gpu0', debian, 'true'], { env: { BURROW_CONFIG: cfgFile, BURROW_CDI_SPEC_DIRS: undefined } });
    expect(c.code, c.stderr).toBe(0);
    const id = c.stdout.trim();
    const spec = JSON.parse(fs.readFileSync(path.join(env.store, 'containers', id, 'bundle', 'config.json'), 'utf8')) as {
      annotations: Record<string, string>;
      process: { env: string[] };
      mounts: { destination: string; source: string }[];
      hooks: Record<string, { path: string; args: string[] }[]>;
    };
    expect(spec.annotations['cdi.k8s.io/burrow_devices']).toBe('example.com/fake=gpu0');
    expect(spec.process.env).toEqual(expect.arrayContaining(['FAKE_COMMON=yes', 'FAKE_GPU=gpu0']));
    expect(spec.mounts).toEqual(expect.arrayContaining([expect.objectContaining({ destination: '/dev/fakegpu0', source: '/dev/null' }), expect.objectContaining({ destination: '/opt/fake/lib', source: libs })]));
    expect(spec.hooks.poststop?.map((h) => h.args.at(-1))).toEqual([`echo stopped > ${hookDir}/create-poststop`]);
    // The spec's hook, then burrow's ldconfig hook for the mounted library directory.
    expect(spec.hooks.createContainer?.map((h) => h.args[0])).toEqual(['sh', 'sh']);
    expect(spec.hooks.createContainer?.[1]?.args.slice(-2)).toEqual([path.join(env.store, 'containers', id, 'bundle', 'rootfs'), '/opt/fake/lib']);
  });

  it('--gpus all without an nvidia.com/gpu spec names nvidia-ctk cdi generate; with one it gives its devices (all, a count, device=)', T, () => {
    const empty = specDir({});
    const before = env.b(['ps', '-aq']).stdout;
    const none = run(empty, ['run', '--rm', '--gpus', 'all', debian, 'true']);
    expect(none.code).toBe(125);
    expect(none.stderr).toContain('--gpus all: no CDI spec of kind nvidia.com/gpu');
    expect(none.stderr).toContain('nvidia-ctk cdi generate');
    expect(env.b(['ps', '-aq']).stdout).toBe(before);
    const gpus = specDir({
      'nvidia.yaml': `cdiVersion: 0.5.0
kind: nvidia.com/gpu
containerEdits:
  env:
  - NVIDIA_VISIBLE_DEVICES=void
devices:
- name: "0"
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
      hostPath: /dev/null
- name: "1"
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia1
      hostPath: /dev/zero
`,
    });
    const probe = 'ls /dev/nvidia* 2>/dev/null | tr "\\n" " "; echo; echo $NVIDIA_VISIBLE_DEVICES';
    const all = run(gpus, ['run', '--rm', '--gpus', 'all', debian, 'sh', '-c', probe]);
    expect([all.code, all.stdout], all.stderr).toEqual([0, '/dev/nvidia0 /dev/nvidia1 \nvoid\n']);
    const one = run(gpus, ['run', '--rm', '--gpus', '1', debian, 'sh', '-c', probe]);
    expect([one.code, one.stdout], one.stderr).toEqual([0, '/dev/nvidia0 \nvoid\n']);
    const dev = run(gpus, ['run', '--rm', '--gpus', 'device=1', debian, 'sh', '-c', probe]);
    expect([dev.code, dev.stdout], dev.stderr).toEqual([0, '/dev/nvidia1 \nvoid\n']);
  });

  it('errors: an unknown device, a malformed spec, conflicting specs, a missing device node; exit 125 and nothing left behind', T, () => {
    const before = env.b(['ps', '-aq']).stdout;
    const good = specDir({ 'fake.json': JSON.stringify(fakeSpec('err')) });
    const unknown = run(good, ['run', '--rm', '--device', 'example.com/fake=gpu7', debian, 'true']);
    expect(unknown.code).toBe(125);
    expect(unknown.stderr).toContain('CDI device example.com/fake=gpu7 is not defined: the specs of kind example.com/fake define gpu0, gpu1');
    const noKind = run(good, ['run', '--rm', '--device', 'other.com/x=y', debian, 'true']);
    expect(noKind.code).toBe(125);
    expect(noKind.stderr).toContain(`no CDI spec of kind other.com/x in ${good} (from BURROW_CDI_SPEC_DIRS)`);

    // A spec of the kind asked for that does not validate: the file and the field.
    const bad = specDir({ 'bad.yaml': 'cdiVersion: 0.6.0\nkind: example.com/broken\ndevices:\n- name: a\n  containerEdits:\n    deviceNodes:\n    - hostPath: /dev/null\n' });
    const broken = run(bad, ['run', '--rm', '--device', 'example.com/broken=a', debian, 'true']);
    expect(broken.code).toBe(125);
    expect(broken.stderr).toContain(`CDI spec ${bad}/bad.yaml devices[0].containerEdits.deviceNodes[0].path: is missing`);
    // Another vendor's broken file does not take this vendor's devices away: a warning.
    fs.writeFileSync(path.join(good, 'zz-broken.json'), '{"cdiVersion": "0.6.0", "kind": "example.com/other", "devices": [], }');
    const warned = run(good, ['run', '--rm', '--device', 'example.com/fake=gpu1', debian, 'sh', '-c', 'echo $FAKE_GPU1']);
    expect([warned.code, warned.stdout], warned.stderr).toEqual([0, 'gpu1\n']);
    expect(warned.stderr).toContain(`warning: CDI spec ${good}/zz-broken.json is not valid JSON`);
    fs.rmSync(path.join(good, 'zz-broken.json'));

    // Two files of one directory defining the same device conflict; a later directory overrides.
    const twice = specDir({ 'a.json': JSON.stringify(fakeSpec('a')), 'b.json': JSON.stringify(fakeSpec('b')) });
    const conflict = run(twice, ['run', '--rm', '--device', 'example.com/fake=gpu1', debian, 'true']);
    expect(conflict.code).toBe(125);
    expect(conflict.stderr).toContain(`CDI device example.com/fake=gpu1 is defined by 2 specs of the same priority: ${twice}/a.json and ${twice}/b.json`);
    const override = specDir({ 'fake.json': JSON.stringify({ cdiVersion: '0.3.0', kind: 'example.com/fake', devices: [{ name: 'gpu1', containerEdits: { env: ['FAKE_GPU1=override'] } }] }) });
    const over = run(`${good}:${override}`, ['run', '--rm', '--device', 'example.com/fake=gpu1', debian, 'sh', '-c', 'echo $FAKE_GPU1']);
    expect([over.code, over.stdout], over.stderr).toEqual([0, 'override\n']);

    // A device node the spec names that this host does not have.
    const missing = specDir({ 'm.json': JSON.stringify({ cdiVersion: '0.5.0', kind: 'example.com/missing', devices: [{ name: 'd', containerEdits: { deviceNodes: [{ path: '/dev/fake-not-here' }] } }] }) });
    const gone = run(missing, ['run', '--rm', '--device', 'example.com/missing=d', debian, 'true']);
    expect(gone.code).toBe(125);
    expect(gone.stderr).toContain('CDI device example.com/missing=d: device node /dev/fake-not-here: no such device');
    // A version burrow does not read.
    const newer = specDir({ 'n.json': JSON.stringify({ cdiVersion: '1.1.0', kind: 'example.com/newer', devices: [{ name: 'd' }] }) });
    const nv = run(newer, ['run', '--rm', '--device', 'example.com/newer=d', debian, 'true']);
    expect(nv.code).toBe(125);
    expect(nv.stderr).toContain('cdiVersion: 1.1.0 is not one burrow reads (0.3.0 to 0.8.0)');
    expect(env.b(['ps', '-aq']).stdout).toBe(before);
  });

  it("burrow-runtime runs a bundle with another engine's CDI annotations and the edits already applied", T, () => {
    const bundle = path.join(env.work, 'foreign-bundle');
    makeBundle(bundle, {
      args: ['sh', '-c', 'test -c /dev/fakegpu0 && echo "$FAKE_GPU" && ls /opt/fake/lib'],
      edit: (c: { annotations?: Record<string, string>; process: { env: string[] }; mounts: object[]; linux: { devices?: object[] } }) => {
        // As podman or containerd write it: the device node in linux.devices, the mount, the env.
        c.annotations = { ...c.annotations, 'cdi.k8s.io/podman_ctr': 'example.com/fake=gpu0', 'cdi.k8s.io/other': 'vendor.example/unknown=x' };
        c.process.env.push('FAKE_GPU=gpu0');
        c.linux.devices = [...(c.linux.devices ?? []), { path: '/dev/fakegpu0', type: 'c', major: 1, minor: 3, fileMode: 0o666, uid: 0, gid: 0 }];
        c.mounts.push({ destination: '/opt/fake/lib', type: 'bind', source: libs, options: ['rbind', 'ro'] });
      },
    });
    const root = path.join(env.work, 'foreign-runtime-root');
    const r = spawnSync(RUNTIME as string, ['--root', root, 'run', '--bundle', bundle, `cdi-foreign-${process.pid}`], { encoding: 'utf8', timeout: 60_000 });
    expect([r.status, r.stdout], r.stderr).toEqual([0, 'gpu0\nlibfakegpu.so.1\n']);
  });
});
