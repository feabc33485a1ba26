/**
 * How a foreground `run` starts and holds the runtime (ts/runtime/client.ts runtimeSpawnHeld):
 * through the napi addon's posix_spawn (crates/burrow-core/src/spawn.rs), and through Node's
 * child_process when the addon is missing. Both must behave as Docker's `run` does: the
 * container's exit status, its output on ours, our stdin with -i and none without, SIGINT (Ctrl-C)
 * and SIGTERM passed on to the container, the runtime's errors in the CLI's voice with Docker's
 * status, and a --rm container gone when `run` returns; a runtime that cannot be started ends
 * the run with 125. And the point of the addon path: a run of a store image or of a one-file
 * image (once its config is kept) loads neither node:child_process nor node:crypto (nor node:net
 * and node:stream under them). As root and as the unprivileged test user.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, IS_ROOT, type Run } from './helpers';
import { IMAGE, setup, sleep, type Env } from './lifecycle.helpers';

let env: Env;
const T = { timeout: 120_000 };
let sqfs: string;

/** Node's modules that the addon path must not load (child_process, crypto and what they bring). */
const HEAVY = /^NativeModule (child_process|crypto|net|stream)$/;

/** The CLI with this file's store; `native: false` makes the addon unloadable (the fallback). */
function run(args: string[], o: { native?: boolean; input?: string; preload?: string; runtime?: string } = {}): Run {
  const extra: Record<string, string> = {};
  if (o.runtime) extra.BURROW_RUNTIME = o.runtime;
  if (o.native === false) extra.BURROW_NATIVE = path.join(env.work, 'no-such-addon.node');
  if (o.preload) extra.NODE_OPTIONS = `--require ${o.preload}`;
  return env.b(args, { input: o.input ?? '', env: extra, timeout: 60_000 });
}

const containerDirs = () => env.containerDirs();

/** Runs `run --rm IMAGE` with a trap for `sig`, sends `sig` to the CLI once the container is ready; its status. */
function interrupted(sig: 'SIGINT' | 'SIGTERM', native: boolean): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const name = sig.slice(3);
    const child = spawn(process.execPath, [BIN, '--root', env.store, '--runroot', env.runroot, 'run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', `trap 'echo caught ${name}; exit 42' ${name}; echo ready; while :; do sleep 0.1; done`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: native ? process.env : { ...process.env, BURROW_NATIVE: path.join(env.work, 'no-such-addon.node') },
    });
    let stdout = '';
    let sent = false;
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (!sent && stdout.includes('ready\n')) {
        sent = true;
        child.kill(sig);
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout }));
  });
}

beforeAll(() => {
  env = setup('runspawn');
  // A one-file image of the same busybox.
  sqfs = path.join(env.work, 'bb.sqfs');
  const c = env.b(['image', 'convert', '--format', 'squashfs', '--processors', '1', IMAGE, sqfs], { timeout: 120_000 });
  if (c.code !== 0) throw new Error(`convert: ${c.stderr}`);
}, 180_000);

afterAll(() => {
  env?.cleanup();
  env?.dispose();
});

describe(`a foreground run holds the runtime, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  for (const native of [true, false]) {
    describe(native ? 'through the addon' : 'through child_process (no addon)', () => {
      it("the container's status and output, our stdin only with -i, the runtime's errors in the CLI's voice, and --rm leaves nothing", T, () => {
        expect(run(['run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', 'echo out; echo err >&2; exit 3'], { native })).toMatchObject({ code: 3, stdout: 'out\n', stderr: 'err\n' });
        expect(run(['run', '--rm', '-i', '--network', 'none', IMAGE, 'sh', '-c', 'read x; echo "got $x"'], { native, input: 'line\n' })).toMatchObject({ code: 0, stdout: 'got line\n' });
        // Without -i the container's stdin is empty, not ours.
        expect(run(['run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', 'cat; echo end'], { native, input: 'ours\n' })).toMatchObject({ code: 0, stdout: 'end\n' });
        const missing = run(['run', '--rm', '--network', 'none', IMAGE, '/no/such/cmd'], { native });
        expect(missing.code).toBe(127);
        expect(missing.stderr).toMatch(/^Error: .*\/no\/such\/cmd.*no such file or directory/m);
        expect(run(['run', '--rm', '--network', 'none', sqfs, 'sh', '-c', 'exit 5'], { native }).code).toBe(5);
        expect(containerDirs()).toEqual([]);
      });

      it('a runtime that cannot be started: status 125, the container removed, and run returns', T, () => {
        const r = run(['run', '--rm', '--network', 'none', IMAGE, 'true'], { native, runtime: path.join(env.work, 'no-such-runtime') });
        expect(r.code).toBe(125);
        if (native) expect(r.stderr).toMatch(/^Error: cannot run .*no-such-runtime: No such file or directory/m);
        expect(containerDirs()).toEqual([]);
      });

      it('SIGINT and SIGTERM reach the container; the --rm container is gone when run returns', T, async () => {
        for (const sig of ['SIGINT', 'SIGTERM'] as const) {
          const r = await interrupted(sig, native);
          expect(r.stdout).toBe(`ready\ncaught ${sig.slice(3)}\n`);
          expect(r.code).toBe(42);
          expect(containerDirs()).toEqual([]);
        }
      });
    });
  }

  it('run --rm of a store image or of a one-file image loads neither child_process nor crypto (nor net, stream)', T, async () => {
    // A one-file image's first start reads its config with unsquashfs (child_process); what it
    // read is kept once the file is older than ts/storage/squash.ts's settling time, and every
    // later start uses that.
    await sleep(Math.max(0, fs.statSync(sqfs).ctimeMs + 2500 - Date.now()));
    expect(run(['run', '--rm', '--network', 'none', sqfs, 'true']).code).toBe(0);
    const dir = fs.mkdtempSync(path.join(env.work, 'mods-'));
    const preload = path.join(dir, 'preload.js');
    const list = path.join(dir, 'loaded.txt');
    fs.writeFileSync(preload, `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(list)}, process.moduleLoadList.join('\\n')));\n`);
    for (const image of [IMAGE, sqfs]) {
      expect(run(['run', '--rm', '--network', 'none', image, 'echo', 'hi'], { preload })).toMatchObject({ code: 0, stdout: 'hi\n' });
      const heavy = fs.readFileSync(list, 'utf8').split('\n').filter((m) => HEAVY.test(m));
      expect(heavy, `run ${image} loaded`).toEqual([]);
    }
    expect(containerDirs()).toEqual([]);
  });
});
