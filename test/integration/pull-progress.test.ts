/**
 * The pull progress display as a person sees it: a pull of a multi-layer image through a slowed
 * proxy, at a real terminal (test/harness/ptydrive.py), its raw output rendered by a small
 * terminal emulator (test/harness/vt.mjs) into the final screen. And the plain log a pull writes
 * when its output is not a terminal. One layer holds device nodes, which the unpacker skips with
 * a warning while the other layers still download: the warning must survive the redraws.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT } from './helpers';
import { endImageTest, exec, sandbox, startProxy, tmpdir, type Sandbox } from './image-helpers';
import type { Drive } from './lifecycle.helpers';
import { startRegistry, type Registry } from '../harness/registry.mjs';
import { buildImage, HOSTILE, pushImage, tarDirectory, ustar, type LayerSpec } from '../harness/images.mjs';
import { render } from '../harness/vt.mjs';


const KiB = 1024;
const COLS = 80;
const WARNING = 'device nodes in the layer were skipped';
const work = fs.mkdtempSync(path.join(tmpdir(), 'burrow-pull-progress-test-'));
let registry: Registry;
/** Short ids (as the display shows them) of the image's layers, in order. */
let layerIds: string[];

beforeAll(async () => {
  // Three layers of incompressible data (each takes about a second through the proxy) and a
  // small one with device nodes, which is unpacked, with its warning, while the others download.
  const layers: LayerSpec[] = [{ tar: path.join(work, 'dev.tar'), compression: 'gzip', comment: 'devices' }];
  fs.writeFileSync(layers[0]!.tar, ustar(HOSTILE.device.entries));
  for (let i = 0; i < 3; i++) {
    const src = path.join(work, `src${i}`);
    fs.mkdirSync(path.join(src, 'data'), { recursive: true });
    fs.writeFileSync(path.join(src, 'data', `blob${i}.bin`), crypto.randomBytes(768 * KiB));
    layers.push({ tar: tarDirectory(src, path.join(work, `layer${i}.tar`)), compression: 'gzip', comment: `data ${i}` });
  }
  const img = buildImage(path.join(work, 'img'), { tag: 'latest', layers });
  layerIds = img.layers.map((l) => l.digest.slice(7, 19));
  registry = await startRegistry({ mode: 'anonymous' });
  await pushImage(registry, img, 'test/progress');
}, 120_000);

afterAll(() => endImageTest(work, [registry]));

/**
 * `argv` at a terminal 80 columns wide, until it exits. Without blocking: the proxy serving the
 * pull runs in this process.
 */
async function atTerminal(sb: Sandbox, argv: string[]): Promise<Drive> {
  const r = await exec('python3', [path.join(ROOT, 'test', 'harness', 'ptydrive.py'), JSON.stringify([['size', 24, COLS], ['wait']]), ...argv], { env: { ...sb.env, TERM: 'xterm' }, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`ptydrive.py exited ${r.code}: ${r.stderr}`);
  const d = JSON.parse(r.stdout) as Drive;
  if (d.failed) throw new Error(`step ${JSON.stringify(d.failed)} did not complete; the terminal showed:\n${d.out}`);
  return d;
}

const count = (lines: string[], re: RegExp): number => lines.filter((l) => re.test(l)).length;

describe('pull progress', () => {
  it('leaves a clean final screen at a terminal: each layer once with its final state, the total, the warning, the digest', async () => {
    const proxy = await startProxy(registry.host, { rate: 768 * KiB });
    const sb = sandbox(work, 'tty');
    const ref = `${proxy.host}/test/progress:latest`;
    const d = await atTerminal(sb, [process.execPath, BIN, '--root', sb.root, '--runroot', sb.runroot, 'pull', ref]);
    expect(d.status, d.out).toBe(0);
    // It was a live display: the block was redrawn (cursor up) while the layers downloaded.
    expect(d.out).toMatch(/\x1b\[\d+A/);
    const screen = render(d.out, COLS);
    const shown = `final screen:\n${screen.join('\n')}`;
    expect(count(screen, /^Trying to pull /), shown).toBe(1);
    for (const id of layerIds) {
      // Exactly one line per layer, showing how it ended; no stale line of an earlier redraw.
      expect(screen.filter((l) => l.startsWith(`${id}: `)), shown).toEqual([`${id}: Pull complete`]);
    }
    // The block is whole and appears once: the layers, then the total, then the digest.
    const totals = screen.flatMap((l, i) => (l.startsWith('total: ') ? [i] : []));
    expect(totals, shown).toHaveLength(1);
    const t = totals[0]!;
    expect(screen.slice(t - layerIds.length, t).map((l) => l.slice(0, 12)).sort(), shown).toEqual([...layerIds].sort());
    expect(screen[t], shown).toMatch(/^total: (\S+)\/\1$/);
    expect(screen[t + 1], shown).toMatch(/^Digest: sha256:[a-f0-9]{64}$/);
    expect(screen[t + 2], shown).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(screen.slice(t + 3), shown).toEqual([]);
    expect(count(screen, /Downloading|Waiting/), shown).toBe(0);
    // The unpacker's warning, printed while the block was on the screen, is still there (wrapped
    // over several rows at 80 columns), once.
    expect(screen.join('').split(WARNING).length - 1, shown).toBe(1);
  });

  it('writes a plain log, one line per event and no escape codes, when stdout is not a terminal', async () => {
    const proxy = await startProxy(registry.host, { rate: 768 * KiB });
    const ref = `${proxy.host}/test/progress:latest`;
    // stdout to a file, stderr still at the terminal: as `burrow pull x > id.txt` or `| cat`.
    const sb = sandbox(work, 'redirected');
    const idFile = path.join(sb.dir, 'id.txt');
    const d = await atTerminal(sb, ['sh', '-c', 'out=$1; shift; exec "$@" > "$out"', 'sh', idFile, process.execPath, BIN, '--root', sb.root, '--runroot', sb.runroot, 'pull', ref]);
    expect(d.status, d.out).toBe(0);
    expect(d.out).not.toContain('\x1b');
    expect(fs.readFileSync(idFile, 'utf8')).toMatch(/^sha256:[a-f0-9]{64}\n$/);
    const lines = d.out.split(/\r?\n/).filter(Boolean);
    for (const id of layerIds) {
      expect(lines.filter((l) => l.startsWith(`${id}: `)), d.out).toEqual([`${id}: Download complete`, `${id}: Pull complete`]);
    }
    expect(count(lines, /^Trying to pull /)).toBe(1);
    expect(count(lines, /^Digest: sha256:/)).toBe(1);
    expect(count(lines, new RegExp(WARNING))).toBe(1);
    // Every line is one of those events: nothing redrawn, no partial lines.
    expect(lines.length, d.out).toBe(layerIds.length * 2 + 3);

    // Both piped (a script capturing everything): the same plain log.
    const proxy2 = await startProxy(registry.host);
    const piped = await sandbox(work, 'piped').ok(['pull', `${proxy2.host}/test/progress:latest`]);
    expect(piped.stderr).not.toContain('\x1b');
    expect(piped.stderr.split('\n').filter(Boolean)).toHaveLength(layerIds.length * 2 + 3);
  });
});
