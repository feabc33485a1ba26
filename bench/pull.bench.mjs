// Pull of a 3-layer image built from this machine's own files (/usr/bin, Python's standard
// library, /usr/share/doc: about 500 MB unpacked, many files) from a loopback registry:
// burrow pull vs podman pull vs skopeo copy + umoci unpack --rootless, side by side.
// Fair measurement on these machines (../shared/peers/README.md): every run writes into a fresh
// directory, tools are interleaved by hyperfine, and everything is deleted only at the end.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { asUser, benchUser, BURROW, have, hyperfine, ratioTable } from './lib.mjs';
import { startRegistry } from '../test/harness/registry.mjs';
import { buildImage, pushImage } from '../test/harness/images.mjs';

export const title = 'Pull: 3 layers (~500 MB unpacked) from a loopback registry';

function layerFrom(work, name, srcDirs) {
  const tar = path.join(work, `${name}.tar`);
  execFileSync('tar', ['-C', '/', '--numeric-owner', '-cf', tar, ...srcDirs.map((d) => d.replace(/^\//, ''))], { stdio: 'ignore' });
  return { tar, compression: 'gzip', comment: name };
}

export async function run() {
  const u = benchUser();
  const base = fs.mkdtempSync('/tmp/burrow-bench-pull-');
  fs.chmodSync(base, 0o755);
  if (u) fs.chownSync(base, u.uid, u.gid);
  const reg = await startRegistry({ mode: 'anonymous' });
  try {
    const work = path.join(base, 'build');
    fs.mkdirSync(work);
    const py = fs.readdirSync('/usr/lib').find((d) => /^python3\.\d+$/.test(d)) ?? 'python3';
    const img = buildImage(path.join(base, 'layout'), {
      tag: 'v1',
      layers: [layerFrom(work, 'bin', ['/usr/bin']), layerFrom(work, 'python', [`/usr/lib/${py}`]), layerFrom(work, 'doc', ['/usr/share/doc'])],
      config: { Cmd: ['/usr/bin/true'] },
    });
    const ref = await pushImage(reg, img, 'bench/big', 'v1');
    fs.rmSync(work, { recursive: true, force: true });
    const size = img.layers.reduce((s, l) => s + l.size, 0);
    const runs = path.join(base, 'runs');
    fs.mkdirSync(runs);
    if (u) fs.chownSync(runs, u.uid, u.gid);
    const fresh = `d=$(mktemp -d -p ${runs})`;
    // One checked pull first, so that a failure says why instead of hyperfine's bare exit code.
    const probe = asUser(['sh', '-c', `${fresh} && ${process.execPath} ${BURROW} --root $d/store --runroot $d/run pull -q ${ref}`]);
    const chk = spawnSync(probe[0], probe.slice(1), { encoding: 'utf8' });
    if (chk.status !== 0) throw new Error(`burrow pull failed (${chk.status}): ${chk.stderr.trim()}`);
    const cmds = [{ name: 'burrow pull', argv: ['sh', '-c', `${fresh} && ${process.execPath} ${BURROW} --root $d/store --runroot $d/run pull -q ${ref} >/dev/null`] }];
    if (have('podman')) cmds.push({ name: 'podman pull', argv: ['sh', '-c', `${fresh} && podman --root $d/store --runroot $d/run pull -q --tls-verify=false ${ref} >/dev/null`] });
    if (have('skopeo') && have('umoci')) {
      cmds.push({ name: 'skopeo copy + umoci unpack', argv: ['sh', '-c', `${fresh} && skopeo copy -q --src-tls-verify=false docker://${ref} oci:$d/oci:v1 && umoci unpack --rootless --image $d/oci:v1 $d/bundle >/dev/null`] });
      cmds.push({ name: 'skopeo copy alone', argv: ['sh', '-c', `${fresh} && skopeo copy -q --src-tls-verify=false docker://${ref} oci:$d/oci:v1`] });
    }
    const rows = hyperfine(cmds, { runs: 3, warmup: 0, ignoreFailure: true });
    return ratioTable(`pull of ${(size / 1e6).toFixed(0)} MB (gzip) in 3 layers`, rows, 'Each run pulls into a new, empty store; nothing is deleted until the end.');
  } finally {
    await reg.stop();
    // Files owned by subordinate ids: remove as root (the bench runs as root).
    spawnSync('rm', ['-rf', base]);
  }
}
