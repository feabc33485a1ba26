/**
 * burrow-runtime driven by the real containerd (Debian's 1.6) through its runc v2 shim with
 * `BinaryName` = burrow-runtime, as issue 13's tests ask: `ctr run --rm`, and the CRI plugin
 * driven by crictl (sigs.k8s.io/cri-tools, pinned, built by .ci/setup) for a pod sandbox and
 * container lifecycle: runp, create, start, exec -s, exec -it through a real pty, stop, rm,
 * stopp, rmp. Issue 17: the RuntimeClass handler `burrow` (a second runtime entry beside the
 * default, as docs/examples/containerd-config.toml has it; `crictl runp --runtime burrow` is what
 * a kubelet sends for a pod of RuntimeClass `burrow`), and checkpoint refused cleanly (by
 * burrow-runtime through `ctr`, by containerd 1.6's CRI itself through `crictl`). Each test
 * starts its own containerd (config.toml, root, state, sockets, runtime state under a temporary
 * directory; test/harness/clients.mjs) and stops it, its shims and anything left by PID,
 * unmounting rootfs and shm mounts under the directory.
 *
 * As root: containerd with its CRI. As the unprivileged user (the user run): rootless containerd
 * under RootlessKit (Debian's rootlesskit 1.1; nerdctl's containerd-rootless.sh, which wraps it, is
 * not packaged, so the harness does what it does), driven with ctr; its CRI is not tested.
 * Pods use the host network (namespace_options.network = NODE): no CNI plugin runs, so the test
 * writes no bridge, firewall rule or /var/lib/cni state on the host.
 * BURROW_CLIENTS_RUNTIME=/usr/sbin/runc runs the same tests with Debian's runc, which pass, but
 * for the RuntimeClass and checkpoint tests: they check burrow-runtime's own state and refusal.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { buildClientImages, clientRuntime, ensureCrictl, mountsUnder, ptyDrive, removeCgroupDirs, run, startContainerd, startRootlessContainerd, which, type Containerd, type RootlessContainerd } from '../harness/clients.mjs';

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

const RUNTIME: string = clientRuntime();
const TAG = `${process.pid}-${Date.now().toString(36)}`;
let work = '';
let images: { busybox: { archive: string; ref: string }; pause: { archive: string; ref: string } };
const started: Containerd[] = [];
const cgroupDirs: string[] = [];
let hadRunContainerd = true;

const show = (r: Result): string => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

async function newContainerd(opts: { defaultRuntime?: string } = {}): Promise<Containerd> {
  const cd = await startContainerd(fs.mkdtempSync(path.join(work, 'c-')), { runtime: RUNTIME, sandboxImage: images.pause.ref, ...opts });
  started.push(cd);
  return cd;
}

/** containerd's own error lines (the shim's runtime failures show there, not in crictl's output). */
function errors(cd: Containerd): string {
  const lines = cd.log().split('\n').filter((l) => l.includes('level=error') && !l.includes('failed to load cni'));
  return lines.length ? `\ncontainerd's errors:\n${lines.slice(-6).join('\n')}` : '';
}

async function ok(r: Promise<Result>, cd?: Containerd): Promise<Result> {
  const x = await r;
  expect(x.code, show(x) + (cd ? errors(cd) : '')).toBe(0);
  return x;
}

describe.skipIf(!IS_ROOT)('containerd 1.6 with the runc v2 shim and BinaryName = burrow-runtime (as root)', () => {
  beforeAll(() => {
    for (const c of ['containerd', 'ctr', 'containerd-shim-runc-v2']) if (!which(c)) throw new Error(`${c} is not installed: run .ci/setup (apt-get install containerd)`);
    if (!fs.existsSync(RUNTIME)) throw new Error(`${RUNTIME} is missing: run npm run build`);
    ensureCrictl();
    hadRunContainerd = fs.existsSync('/run/containerd');
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-containerd-clients-'));
    images = buildClientImages(path.join(work, 'images'));
  }, 900_000);

  afterEach(async () => {
    for (const cd of started.splice(0)) {
      const left = await cd.stop();
      fs.rmSync(cd.dir, { recursive: true, force: true });
      expect(left.left, 'mounts that could not be unmounted').toEqual([]);
    }
    for (const c of cgroupDirs.splice(0)) removeCgroupDirs(c);
  }, 120_000);

  afterAll(() => {
    if (!work) return;
    expect(mountsUnder(work)).toEqual([]);
    fs.rmSync(work, { recursive: true, force: true });
    // containerd 1.6 puts its shims' sockets in /run/containerd/s whatever its config says;
    // the shims remove their sockets, and the directories go if these tests made them.
    if (!hadRunContainerd) {
      for (const d of ['/run/containerd/s', '/run/containerd']) {
        try {
          fs.rmdirSync(d);
        } catch {
          /* not empty (another containerd uses it) or gone */
        }
      }
    }
  });

  it('ctr run --rm: the exit status and output of the container, /dev/null writable', async () => {
    const cd = await newContainerd();
    const ns = `burrowtest-${TAG}`;
    cgroupDirs.push(ns); // ctr's default spec puts the container in /NS/ID
    await ok(cd.ctr(['-n', ns, 'images', 'import', images.busybox.archive]));
    const r: Result = await cd.ctr(['-n', ns, 'run', '--rm', '--runc-binary', RUNTIME, '--runc-root', cd.runtimeRoot, '--fifo-dir', cd.fifoDir, images.busybox.ref, 'ctr-run-1', 'sh', '-c', 'echo x > /dev/null && echo out-ok; echo to-stderr >&2; exit 7']);
    expect(r.code, show(r)).toBe(7);
    expect(r.stdout).toBe('out-ok\n');
    expect(r.stderr).toContain('to-stderr');
    const left: Result = await cd.ctr(['-n', ns, 'containers', 'list', '-q']);
    expect(left.stdout.trim(), 'ctr run --rm removed the container').toBe('');
  });

  it("ctr run of a command that does not exist: the runtime's error reaches ctr (the shim reads it from --log in JSON)", async () => {
    const cd = await newContainerd();
    const ns = `burrowtest-${TAG}`;
    cgroupDirs.push(ns);
    await ok(cd.ctr(['-n', ns, 'images', 'import', images.busybox.archive]));
    const r: Result = await cd.ctr(['-n', ns, 'run', '--rm', '--runc-binary', RUNTIME, '--runc-root', cd.runtimeRoot, '--fifo-dir', cd.fifoDir, images.busybox.ref, 'ctr-missing', 'nosuchcmd']);
    expect(r.code, show(r)).not.toBe(0);
    // runc: 'OCI runtime create failed: runc create failed: unable to start container process:
    // exec: "nosuchcmd": executable file not found in $PATH: unknown'.
    expect(r.stderr).toMatch(/OCI runtime create failed: .*exec: "nosuchcmd": executable file not found in \$PATH/);
    await cd.ctr(['-n', ns, 'containers', 'delete', 'ctr-missing']);
  });

  it('ctr run: the container is in its own cgroup /NS/ID in every v1 hierarchy and the unified one, as with runc', async () => {
    const cd = await newContainerd();
    const ns = `burrowtest-${TAG}`;
    cgroupDirs.push(ns);
    await ok(cd.ctr(['-n', ns, 'images', 'import', images.busybox.archive]));
    const r: Result = await cd.ctr(['-n', ns, 'run', '--rm', '--runc-binary', RUNTIME, '--runc-root', cd.runtimeRoot, '--fifo-dir', cd.fifoDir, images.busybox.ref, 'ctr-cg', 'cat', '/proc/self/cgroup']);
    expect(r.code, show(r)).toBe(0);
    const paths = new Set(r.stdout.trim().split('\n').map((l) => l.split(':').slice(2).join(':')));
    expect([...paths], r.stdout).toEqual([`/${ns}/ctr-cg`]);
  });

  /** Writes the pod and container configs crictl reads; returns their paths. */
  function criConfigs(cd: Containerd, name: string, command: string[], linux: Record<string, unknown> = {}): { pod: string; ctr: string; cgroupParent: string } {
    const cgroupParent = `burrow-crictl-${TAG}-${name}`;
    cgroupDirs.push(cgroupParent);
    const pod = path.join(cd.dir, `${name}-pod.json`);
    const ctr = path.join(cd.dir, `${name}-ctr.json`);
    fs.mkdirSync(path.join(cd.dir, 'logs', name), { recursive: true });
    fs.writeFileSync(
      pod,
      JSON.stringify({
        metadata: { name: `pod-${name}`, namespace: 'burrowtest', uid: `uid-${TAG}-${name}`, attempt: 0 },
        log_directory: path.join(cd.dir, 'logs', name),
        // cgroupfs path for the pod; NODE network: no CNI.
        linux: { cgroup_parent: `/${cgroupParent}`, security_context: { namespace_options: { network: 2 } } },
      }),
    );
    fs.writeFileSync(ctr, JSON.stringify({ metadata: { name: `ctr-${name}` }, image: { image: images.busybox.ref }, command, log_path: `ctr-${name}.log`, linux }));
    return { pod, ctr, cgroupParent };
  }

  async function importForCri(cd: Containerd): Promise<void> {
    await ok(cd.ctr(['-n', 'k8s.io', 'images', 'import', images.busybox.archive]));
    await ok(cd.ctr(['-n', 'k8s.io', 'images', 'import', images.pause.archive]));
  }

  const LOOP = ['/bin/sh', '-c', 'trap "exit 0" TERM; echo started; while :; do sleep 1; done'];

  it(
    'crictl: runp, create, start, exec -s, exec -it through a pty, stop, rm, stopp, rmp',
    async () => {
      const cd = await newContainerd();
      await importForCri(cd);
      const cfg = criConfigs(cd, 'full', LOOP);
      const pod = (await ok(cd.crictl(['runp', cfg.pod]), cd)).stdout.trim();
      expect(pod).toMatch(/^[0-9a-f]{64}$/);
      const cid = (await ok(cd.crictl(['create', pod, cfg.ctr, cfg.pod]), cd)).stdout.trim();
      expect(cid).toMatch(/^[0-9a-f]{64}$/);
      await ok(cd.crictl(['start', cid]), cd);
      const st: Result = await cd.crictl(['inspect', '-o', 'go-template', '--template', '{{.status.state}}', cid]);
      expect(st.stdout.trim(), show(st)).toBe('CONTAINER_RUNNING');

      // The exec steps are soft: the lifecycle below still runs and reports its own failure.
      const e: Result = await cd.crictl(['exec', '-s', cid, 'sh', '-c', 'echo x > /dev/null && echo exec-ok']);
      expect.soft(e.code, show(e)).toBe(0);
      expect.soft(e.stdout).toContain('exec-ok');
      const t = await ptyDrive([['expect', '# '], ['send', 'tty; echo pty-$((6*7))\r'], ['expect', 'pty-42'], ['send', 'exit 3\r'], ['wait']], cd.crictlArgv(['exec', '-it', cid, 'sh']));
      expect.soft(t.failed, JSON.stringify(t)).toBeNull();
      expect.soft(t.out).toMatch(/\/dev\/pts\/\d+/);
      expect.soft(t.out, 'crictl reports the exit code of the exec').toContain('exit code 3');

      await ok(cd.crictl(['stop', '-t', '20', cid]), cd);
      const ex: Result = await cd.crictl(['inspect', '-o', 'go-template', '--template', '{{.status.state}} {{.status.exitCode}}', cid]);
      expect(ex.stdout.trim(), show(ex)).toBe('CONTAINER_EXITED 0');
      await ok(cd.crictl(['rm', cid]), cd);
      await ok(cd.crictl(['stopp', pod]), cd);
      await ok(cd.crictl(['rmp', pod]), cd);
      expect((await ok(cd.crictl(['pods', '-q']), cd)).stdout.trim()).toBe('');
      expect((await ok(cd.crictl(['ps', '-a', '-q']), cd)).stdout.trim()).toBe('');
      const tasks: Result = await cd.ctr(['-n', 'k8s.io', 'tasks', 'list', '-q']);
      expect(tasks.stdout.trim(), 'no task left in containerd').toBe('');
    },
    180_000,
  );

  it(
    'crictl: a pod whose container exited on its own is stopped and removed (stop, rm, stopp, rmp)',
    async () => {
      const cd = await newContainerd();
      await importForCri(cd);
      const cfg = criConfigs(cd, 'exited', ['/bin/sh', '-c', 'echo done; exit 5']);
      const pod = (await ok(cd.crictl(['runp', cfg.pod]), cd)).stdout.trim();
      const cid = (await ok(cd.crictl(['create', pod, cfg.ctr, cfg.pod]), cd)).stdout.trim();
      await ok(cd.crictl(['start', cid]), cd);
      // Wait for the exit that containerd's shim reports (a state, not a time), or for
      // containerd to say it could not handle it (then the state never comes).
      let state = '';
      const failed = (): boolean => (cd.log() as string).includes('failed to handle container TaskExit');
      for (let i = 0; i < 150 && state !== 'CONTAINER_EXITED 5' && !failed(); i++) {
        state = (await cd.crictl(['inspect', '-o', 'go-template', '--template', '{{.status.state}} {{.status.exitCode}}', cid])).stdout.trim();
        if (state !== 'CONTAINER_EXITED 5') await new Promise((r) => setTimeout(r, 100));
      }
      expect(state, errors(cd)).toBe('CONTAINER_EXITED 5');
      const logs: Result = await cd.crictl(['logs', cid]);
      expect(logs.stdout).toBe('done\n');
      await ok(cd.crictl(['stop', cid]), cd);
      await ok(cd.crictl(['rm', cid]), cd);
      await ok(cd.crictl(['stopp', pod]), cd);
      await ok(cd.crictl(['rmp', pod]), cd);
      expect((await ok(cd.crictl(['pods', '-q']), cd)).stdout.trim()).toBe('');
    },
    180_000,
  );

  it(
    'crictl update raises a memory limit on cgroup v1 (swap limit first, as runc orders them)',
    async () => {
      const cd = await newContainerd();
      await importForCri(cd);
      const MiB = 1024 * 1024;
      const cfg = criConfigs(cd, 'update', LOOP, { resources: { memory_limit_in_bytes: 64 * MiB, cpu_shares: 512 } });
      const pod = (await ok(cd.crictl(['runp', cfg.pod]), cd)).stdout.trim();
      const cid = (await ok(cd.crictl(['create', pod, cfg.ctr, cfg.pod]), cd)).stdout.trim();
      await ok(cd.crictl(['start', cid]), cd);
      // Read on the host: the container's cgroup directories under the pod's cgroup parent.
      const mem = (f: string): number => Number(fs.readFileSync(path.join('/sys/fs/cgroup/memory', cfg.cgroupParent, cid, f), 'utf8'));
      expect(mem('memory.limit_in_bytes')).toBe(64 * MiB);
      // containerd's CRI sets the swap limit (memory + swap) to the memory limit on v1. Raising
      // both: the kernel refuses a memory limit above the current memory + swap limit, so the
      // swap limit must be written first.
      const hasMemsw = fs.existsSync(path.join('/sys/fs/cgroup/memory', cfg.cgroupParent, cid, 'memory.memsw.limit_in_bytes'));
      if (hasMemsw) expect(mem('memory.memsw.limit_in_bytes')).toBe(64 * MiB);
      await ok(cd.crictl(['update', '--memory', String(128 * MiB), cid]), cd);
      expect(mem('memory.limit_in_bytes')).toBe(128 * MiB);
      if (hasMemsw) expect(mem('memory.memsw.limit_in_bytes')).toBe(128 * MiB);
      // And lowering them again: now the memory limit first.
      await ok(cd.crictl(['update', '--memory', String(32 * MiB), cid]), cd);
      expect(mem('memory.limit_in_bytes')).toBe(32 * MiB);
      if (hasMemsw) expect(mem('memory.memsw.limit_in_bytes')).toBe(32 * MiB);
    },
    180_000,
  );

  /** The parts of `crictl inspect`/`inspectp -o json` (containerd 1.6's verbose info) read here. */
  interface CriInspect {
    status: { state: string };
    info: { pid: number; runtimeHandler?: string; runtimeOptions: { binary_name?: string } };
  }

  /** `crictl inspect`/`inspectp` as JSON. */
  async function inspect(cd: Containerd, what: 'inspect' | 'inspectp', id: string): Promise<CriInspect> {
    return JSON.parse((await ok(cd.crictl([what, '-o', 'json', id]), cd)).stdout);
  }

  /** What the runtime at `binary` says of container `id` under its state root `root` (`state`). */
  async function runtimeState(binary: string, root: string, id: string): Promise<{ code: number; state?: { status: string; pid: number } }> {
    const r: Result = await run(binary, ['--root', root, 'state', id]);
    return r.code === 0 ? { code: 0, state: JSON.parse(r.stdout) } : { code: r.code };
  }

  it(
    'RuntimeClass handler `burrow`: crictl runp --runtime burrow runs the pod and its container with burrow-runtime, while the default handler (runc) still runs its own',
    async () => {
      // The default handler is Debian's runc here, the `burrow` handler burrow-runtime, each with
      // its own state root: a pod proves which runtime made it by where its state is and what
      // wrote it.
      const runc = which('runc');
      if (!runc) throw new Error('runc is not installed: run .ci/setup (apt-get install runc)');
      const cd = await newContainerd({ defaultRuntime: runc });
      await importForCri(cd);
      const burrowRoot = path.join(cd.handlers.burrow.root, 'k8s.io');
      const runcRoot = path.join(cd.handlers.runc.root, 'k8s.io');

      // What a kubelet sends for a pod whose runtimeClassName names a RuntimeClass with
      // `handler: burrow`: RunPodSandbox with runtime_handler = "burrow".
      const bcfg = criConfigs(cd, 'rc-burrow', LOOP);
      const bpod = (await ok(cd.crictl(['runp', '--runtime', 'burrow', bcfg.pod]), cd)).stdout.trim();
      const bcid = (await ok(cd.crictl(['create', bpod, bcfg.ctr, bcfg.pod]), cd)).stdout.trim();
      await ok(cd.crictl(['start', bcid]), cd);
      const dcfg = criConfigs(cd, 'rc-default', LOOP);
      const dpod = (await ok(cd.crictl(['runp', dcfg.pod]), cd)).stdout.trim();
      const dcid = (await ok(cd.crictl(['create', dpod, dcfg.ctr, dcfg.pod]), cd)).stdout.trim();
      await ok(cd.crictl(['start', dcid]), cd);

      // containerd's view: the handler and the runtime binary it gave the shim.
      const bp = await inspect(cd, 'inspectp', bpod);
      expect(bp.info.runtimeHandler).toBe('burrow');
      expect(bp.info.runtimeOptions.binary_name).toBe(RUNTIME);
      const bc = await inspect(cd, 'inspect', bcid);
      expect(bc.status.state).toBe('CONTAINER_RUNNING');
      expect(bc.info.runtimeOptions.binary_name, 'a container runs with its pod\'s handler').toBe(RUNTIME);
      const dp = await inspect(cd, 'inspectp', dpod);
      expect(dp.info.runtimeHandler).toBe('');
      expect(dp.info.runtimeOptions.binary_name).toBe(runc);

      // The runtime's view: burrow-runtime's own state (its state.json has initStartTime and
      // configPath, which runc's never has) holds the burrow pod's sandbox and container, running
      // with the pid containerd reports; runc's root knows neither. And the other way round.
      for (const id of [bpod, bcid]) {
        const st = JSON.parse(fs.readFileSync(path.join(burrowRoot, id, 'state.json'), 'utf8'));
        expect(Object.keys(st), 'burrow-runtime wrote this state').toEqual(expect.arrayContaining(['initStartTime', 'configPath']));
        const s = await runtimeState(RUNTIME, burrowRoot, id);
        expect(s.state?.status, `burrow-runtime state ${id}`).toBe('running');
        expect((await runtimeState(runc, runcRoot, id)).code, 'runc does not know it').not.toBe(0);
      }
      expect((await runtimeState(RUNTIME, burrowRoot, bcid)).state?.pid).toBe(bc.info.pid);
      for (const id of [dpod, dcid]) {
        expect((await runtimeState(runc, runcRoot, id)).state?.status, `runc state ${id}`).toBe('running');
        expect(fs.existsSync(path.join(burrowRoot, id)), 'burrow-runtime does not know it').toBe(false);
      }
      // The process tree: the container's init is a child of the shim containerd started for the
      // pod, and it is the process burrow-runtime recorded.
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${bc.info.pid}/status`, 'utf8'))?.[1]);
      expect(fs.readFileSync(`/proc/${ppid}/cmdline`, 'utf8').split('\0')[0]).toMatch(/containerd-shim-runc-v2$/);

      // Both work through the CRI: exec (streamed: `exec -s` adds blank lines with either
      // runtime), then the whole teardown.
      for (const cid of [bcid, dcid]) {
        const e: Result = await cd.crictl(['exec', cid, 'sh', '-c', 'echo exec-ok']);
        expect(e.stdout, show(e) + errors(cd)).toBe('exec-ok\n');
      }
      for (const [pod, cid] of [[bpod, bcid], [dpod, dcid]] as const) {
        await ok(cd.crictl(['stop', '-t', '20', cid]), cd);
        await ok(cd.crictl(['rm', cid]), cd);
        await ok(cd.crictl(['stopp', pod]), cd);
        await ok(cd.crictl(['rmp', pod]), cd);
      }
      expect((await ok(cd.crictl(['pods', '-q']), cd)).stdout.trim()).toBe('');
      expect(fs.readdirSync(burrowRoot), "burrow-runtime's state is gone").toEqual([]);
      expect(fs.readdirSync(runcRoot)).toEqual([]);
    },
    180_000,
  );

  it(
    'checkpoint is refused cleanly: ctr tasks checkpoint and ctr containers checkpoint --task name burrow-runtime\'s refusal, the task keeps running, no checkpoint is left',
    async () => {
      const cd = await newContainerd();
      const ns = `burrowtest-${TAG}`;
      cgroupDirs.push(ns);
      await ok(cd.ctr(['-n', ns, 'images', 'import', images.busybox.archive]));
      await ok(cd.ctr(['-n', ns, 'run', '-d', '--runc-binary', RUNTIME, '--runc-root', cd.runtimeRoot, '--fifo-dir', cd.fifoDir, images.busybox.ref, 'ctr-cp', ...LOOP]), cd);
      const pid = (await ok(cd.ctr(['-n', ns, 'tasks', 'list']))).stdout.match(/^ctr-cp\s+(\d+)\s+RUNNING/m)?.[1];
      expect(pid, 'the task runs').toBeTruthy();
      // containerd's garbage collection, synchronously: an image removal with --sync runs one.
      // Before the content is listed too: the import leaves unreferenced blobs (the archive's
      // own manifests) that a collection in the background removes at a moment of its own.
      const collect = async (): Promise<void> => {
        await ok(cd.ctr(['-n', ns, 'images', 'tag', images.busybox.ref, 'docker.io/burrowtest/gc:1']));
        await ok(cd.ctr(['-n', ns, 'images', 'remove', '--sync', 'docker.io/burrowtest/gc:1']));
      };
      await collect();
      const imagesBefore = (await ok(cd.ctr(['-n', ns, 'images', 'list', '-q']))).stdout;
      const contentBefore = (await ok(cd.ctr(['-n', ns, 'content', 'list', '-q']))).stdout;
      const imagePath = path.join(cd.dir, 'cp-image');
      const workPath = path.join(cd.dir, 'cp-work');
      const attempts: string[][] = [
        ['tasks', 'checkpoint', 'ctr-cp'],
        ['tasks', 'checkpoint', '--image-path', imagePath, '--work-path', workPath, 'ctr-cp'],
        ['containers', 'checkpoint', '--task', 'ctr-cp', 'example.com/burrowtest/cp:1'],
      ];
      for (const args of attempts) {
        const r: Result = await cd.ctr(['-n', ns, ...args]);
        expect(r.code, show(r)).not.toBe(0);
        expect(r.stderr, `ctr ${args.join(' ')}`).toContain('burrow-runtime does not support checkpoint yet');
        const t: Result = await ok(cd.ctr(['-n', ns, 'tasks', 'list']));
        expect(t.stdout, 'the task keeps running, the same process').toMatch(new RegExp(`^ctr-cp\\s+${pid}\\s+RUNNING`, 'm'));
      }
      // Nothing left: no image, no content, nothing in containerd's TMPDIR (where it makes the
      // checkpoint's directory), nothing at the paths given, the task's state as before.
      // `ctr containers checkpoint` writes the container's runtime options as a blob before it
      // asks for the task's checkpoint, under a lease it drops on the failure: unreferenced
      // garbage, which containerd's next collection removes.
      expect((await ok(cd.ctr(['-n', ns, 'images', 'list', '-q']))).stdout).toBe(imagesBefore);
      await collect();
      expect((await ok(cd.ctr(['-n', ns, 'content', 'list', '-q']))).stdout).toBe(contentBefore);
      expect(fs.readdirSync(cd.tmpDir)).toEqual([]);
      expect(fs.existsSync(imagePath) ? fs.readdirSync(imagePath) : []).toEqual([]);
      expect(fs.existsSync(workPath) ? fs.readdirSync(workPath) : []).toEqual([]);
      const e: Result = await cd.ctr(['-n', ns, 'tasks', 'exec', '--exec-id', 'after-cp', 'ctr-cp', 'echo', 'still-here']);
      expect(e.stdout, show(e)).toBe('still-here\n');
      await ok(cd.ctr(['-n', ns, 'tasks', 'kill', '-s', 'TERM', 'ctr-cp']));
      // The task's exit, as a state (ctr tasks list stops listing it as RUNNING).
      for (let i = 0; i < 200 && /RUNNING/.test((await cd.ctr(['-n', ns, 'tasks', 'list'])).stdout); i++) await new Promise((r) => setTimeout(r, 50));
      await ok(cd.ctr(['-n', ns, 'tasks', 'delete', 'ctr-cp']), cd);
      await ok(cd.ctr(['-n', ns, 'containers', 'delete', 'ctr-cp']), cd);
      expect((await run(RUNTIME, ['--root', path.join(cd.runtimeRoot, ns), 'list', '-q'])).stdout.trim(), 'nothing left in the runtime').toBe('');
    },
    180_000,
  );

  it(
    'crictl checkpoint: containerd 1.6\'s CRI refuses it itself (CheckpointContainer not implemented) before the runtime; the container keeps running',
    async () => {
      const cd = await newContainerd();
      await importForCri(cd);
      const cfg = criConfigs(cd, 'cp', LOOP);
      const pod = (await ok(cd.crictl(['runp', '--runtime', 'burrow', cfg.pod]), cd)).stdout.trim();
      const cid = (await ok(cd.crictl(['create', pod, cfg.ctr, cfg.pod]), cd)).stdout.trim();
      await ok(cd.crictl(['start', cid]), cd);
      const pid = (await inspect(cd, 'inspect', cid)).info.pid;
      const tar = path.join(cd.dir, 'cp.tar');
      const r: Result = await cd.crictl(['checkpoint', '--export', tar, cid]);
      expect(r.code, show(r)).not.toBe(0);
      expect(r.stderr).toContain('CheckpointContainer not implemented');
      expect(fs.existsSync(tar)).toBe(false);
      const after = await inspect(cd, 'inspect', cid);
      expect(after.status.state).toBe('CONTAINER_RUNNING');
      expect(after.info.pid).toBe(pid);
      await ok(cd.crictl(['stop', '-t', '20', cid]), cd);
      await ok(cd.crictl(['rm', cid]), cd);
      await ok(cd.crictl(['stopp', pod]), cd);
      await ok(cd.crictl(['rmp', pod]), cd);
    },
    180_000,
  );
});

describe.skipIf(IS_ROOT)('rootless containerd under RootlessKit with burrow-runtime (as an unprivileged user)', () => {
  let rwork = '';
  let rimages: { busybox: { archive: string; ref: string } };
  const open: RootlessContainerd[] = [];

  beforeAll(() => {
    for (const c of ['containerd', 'ctr', 'containerd-shim-runc-v2', 'rootlesskit', 'nsenter']) if (!which(c)) throw new Error(`${c} is not installed: run .ci/setup (apt-get install containerd rootlesskit)`);
    if (!fs.existsSync(RUNTIME)) throw new Error(`${RUNTIME} is missing: run npm run build`);
    rwork = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-rootless-containerd-'));
    rimages = buildClientImages(path.join(rwork, 'images'));
  }, 300_000);

  afterEach(async () => {
    for (const cd of open.splice(0)) {
      const left = await cd.stop();
      fs.rmSync(cd.dir, { recursive: true, force: true });
      expect(left.pids, 'processes left after rootlesskit stopped').toEqual([]);
    }
  }, 120_000);

  afterAll(() => {
    if (rwork) fs.rmSync(rwork, { recursive: true, force: true });
  });

  async function newRootless(): Promise<RootlessContainerd> {
    const cd = await startRootlessContainerd(fs.mkdtempSync(path.join(rwork, 'r-')));
    open.push(cd);
    await ok(cd.ctr(['-n', 'rl', 'images', 'import', rimages.busybox.archive]));
    return cd;
  }

  it('ctr run --rm without limits: burrow-runtime runs the container as the user (uid 0 inside maps to the user), its output and exit status reach ctr', async () => {
    const cd = await newRootless();
    const runtimeRoot = path.join(cd.dir, 'burrow');
    // --cpu-shares 0: ctr's default spec asks for CPU shares (1024), a limit; without it the spec
    // asks for none, and on cgroup v1, which a user cannot write, burrow-runtime then runs the
    // container without a cgroup of its own.
    const r: Result = await cd.ctr(['-n', 'rl', 'run', '--rm', '--cpu-shares', '0', '--runc-binary', RUNTIME, '--runc-root', runtimeRoot, rimages.busybox.ref, 'rl-1', 'sh', '-c', 'id -u; head -1 /proc/self/uid_map; echo to-stderr >&2; exit 7']);
    expect(r.code, show(r) + `\n${cd.log().slice(-2000)}`).toBe(7);
    const [uid, map] = r.stdout.trim().split('\n');
    expect(uid).toBe('0');
    expect(map?.trim().split(/\s+/), "uid 0 in RootlessKit's namespace is the user").toEqual(['0', String(os.userInfo().uid), '1']);
    expect(r.stderr).toContain('to-stderr');
    expect((await ok(cd.ctr(['-n', 'rl', 'containers', 'list', '-q']))).stdout.trim(), 'run --rm removed it').toBe('');
  });

  // On a cgroup v2 host the outcome depends on the controllers delegated to the user instead.
  it.skipIf(fs.existsSync('/sys/fs/cgroup/cgroup.controllers'))('ctr run with its default CPU shares on cgroup v1: refused with the cause and the fix, nothing left', async () => {
    const cd = await newRootless();
    const runtimeRoot = path.join(cd.dir, 'burrow');
    const r: Result = await cd.ctr(['-n', 'rl', 'run', '--rm', '--runc-binary', RUNTIME, '--runc-root', runtimeRoot, rimages.busybox.ref, 'rl-2', 'true']);
    expect(r.code, show(r)).not.toBe(0);
    expect(r.stderr).toMatch(/OCI runtime create failed: cannot create the container's cgroup to enforce its limits: mkdir \/sys\/fs\/cgroup\/\S+: Permission denied.*Fix: use cgroup v2 with controllers delegated/);
    await cd.ctr(['-n', 'rl', 'containers', 'delete', 'rl-2']);
    expect((await run(RUNTIME, ['--root', path.join(runtimeRoot, 'rl'), 'list', '-q'])).stdout.trim(), 'nothing left in the runtime').toBe('');
    expect((await ok(cd.ctr(['-n', 'rl', 'containers', 'list', '-q']))).stdout.trim()).toBe('');
  });
});
