// The MPI test image (issue 18, the hybrid model): the host's Open MPI, from Debian's packages,
// copied into a build context with the test program compiled by the host's mpicc, so that the
// Open MPI inside the image is byte for byte the one `mpirun` on the host runs. Nothing is
// downloaded: the files are the host's (`dpkg -L` of the runtime packages, and every shared
// library they load that the C library package does not provide, as `ldd` resolves it).
//
//   mpiContext(dir, base)  writes dir/Dockerfile (FROM base), dir/openmpi/ (the tree), dir/hello
//   hasOpenMpi()           whether mpirun and mpicc are installed (.ci/setup installs them)
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** Open MPI's runtime packages (openmpi-bin too: the same mpirun inside, for whoever wants it). */
export const PACKAGES = ['libopenmpi3', 'openmpi-common', 'openmpi-bin', 'libpmix2'];

export function hasOpenMpi() {
  return ['mpirun', 'mpicc'].every((c) => spawnSync('sh', ['-c', `command -v ${c}`], { stdio: 'ignore' }).status === 0);
}

/** A path with its directories resolved (bookworm's /lib is a link to usr/lib: COPY must not replace the image's link with a directory). */
function canonical(p) {
  try {
    return path.join(fs.realpathSync(path.dirname(p)), path.basename(p));
  } catch {
    return null;
  }
}

function dpkgFiles(pkgs) {
  return execFileSync('dpkg', ['-L', ...pkgs], { encoding: 'utf8', maxBuffer: 1 << 26 }).split('\n').filter(Boolean);
}

function isElf(p) {
  try {
    const fd = fs.openSync(p, 'r');
    const b = Buffer.alloc(4);
    fs.readSync(fd, b, 0, 4, 0);
    fs.closeSync(fd);
    return b.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } catch {
    return false;
  }
}

/** The host files of Open MPI's runtime: the packages' files and links, and the libraries they need beyond libc6's. */
export function openMpiFiles() {
  const libc = new Set(dpkgFiles(['libc6']).map(canonical).filter(Boolean));
  const files = new Set();
  for (const f of dpkgFiles(PACKAGES)) {
    const c = canonical(f);
    if (!c) continue;
    const st = fs.lstatSync(c, { throwIfNoEntry: false });
    if (st && !st.isDirectory()) files.add(c);
  }
  const elves = [...files].filter((f) => fs.lstatSync(f).isFile() && isElf(f));
  // ldd in batches (one process per file would take long on a loaded machine).
  for (let i = 0; i < elves.length; i += 50) {
    const r = spawnSync('ldd', elves.slice(i, i + 50), { encoding: 'utf8', maxBuffer: 1 << 26 });
    for (const m of r.stdout.matchAll(/=>\s+(\/\S+)\s+\(/g)) {
      const c = canonical(m[1]);
      if (!c || libc.has(c)) continue;
      // Every hop of a chain of links (libpsm_infinipath.so.1 goes through /etc/alternatives).
      for (let hop = c, n = 0; hop && !files.has(hop) && n < 16; n++) {
        files.add(hop);
        if (!fs.lstatSync(hop).isSymbolicLink()) break;
        hop = canonical(path.resolve(path.dirname(hop), fs.readlinkSync(hop)));
      }
    }
  }
  return [...files].sort();
}

/** Writes the build context: Dockerfile, openmpi/ (the host's Open MPI tree) and hello (compiled here). */
export function mpiContext(dir, base) {
  fs.mkdirSync(path.join(dir, 'openmpi'), { recursive: true });
  const files = openMpiFiles();
  for (const f of files) {
    const to = path.join(dir, 'openmpi', f);
    fs.mkdirSync(path.dirname(to), { recursive: true });
    const st = fs.lstatSync(f);
    if (st.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(f), to);
    else fs.copyFileSync(f, to);
    if (!st.isSymbolicLink()) fs.chmodSync(to, st.mode & 0o7777);
  }
  execFileSync('mpicc', ['-O2', '-o', path.join(dir, 'hello'), path.join(HERE, 'mpi', 'hello.c')]);
  fs.writeFileSync(
    path.join(dir, 'Dockerfile'),
    [`FROM ${base}`, 'COPY openmpi/ /', 'COPY hello /app/hello', 'RUN ldconfig', 'CMD ["/app/hello"]', ''].join('\n'),
  );
  return { files: files.length };
}
