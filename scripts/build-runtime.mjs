#!/usr/bin/env node
// Builds burrow-runtime as a static executable (glibc static-pie, libseccomp.a) and puts it at
// target/release/burrow-runtime, where the CLI and the tests look for it.
//
// Why static: the monitor (one per detached container) and the network owner live as long as
// what they hold, and every page they map counts in their resident memory. A dynamic build maps
// libc, libm, libgcc_s, libseccomp and ld.so (about 2 MiB per process) and dirties its own
// relocated data at each start; a static one maps only the parts of libc it calls, and with
// packed relative relocations (-z pack-relative-relocs, DT_RELR) reads a few KiB of relocations
// instead of 400. It also starts faster (no dynamic loading). Only this binary: the napi addon
// is a cdylib loaded by node and must stay dynamic, so the flags are given here, for a build
// with an explicit --target (which keeps them off build scripts and proc macros) and the
// `runtime` profile of Cargo.toml (optimised for size), rather than in
// .cargo/config.toml. NSS: the runtime asks the password database only for a home directory
// when HOME is unset (burrow_core::paths::home_dir); a static glibc still loads the system's
// libnss_files for that, which works with the glibc it was built against (the package's own
// distribution), and falls back to "/" elsewhere.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const host = /^host: (\S+)$/m.exec(execFileSync('rustc', ['-vV'], { encoding: 'utf8' }))?.[1];
if (!host) throw new Error('cannot tell the host target from `rustc -vV`');

let seccompDir = '';
try {
  seccompDir = execFileSync('pkg-config', ['--variable=libdir', 'libseccomp'], { encoding: 'utf8' }).trim();
} catch {
  // no pkg-config file: the usual place
}
if (!seccompDir || !fs.existsSync(path.join(seccompDir, 'libseccomp.a'))) {
  throw new Error(`libseccomp.a not found${seccompDir ? ` in ${seccompDir}` : ''}: install libseccomp-dev (.ci/setup does)`);
}

const flags = ['-C', 'target-feature=+crt-static', '-C', 'link-arg=-Wl,-z,pack-relative-relocs'];
const env = {
  ...process.env,
  RUSTFLAGS: [process.env.RUSTFLAGS ?? '', ...flags].join(' ').trim(),
  // libseccomp-sys: link libseccomp.a instead of the shared library.
  LIBSECCOMP_LINK_TYPE: 'static',
  LIBSECCOMP_LIB_PATH: seccompDir,
};
execFileSync('cargo', ['build', '--profile', 'runtime', '-p', 'burrow-runtime', '--target', host], { cwd: ROOT, env, stdio: 'inherit' });

// The package's binaries: burrow-runtime; burrow-monitor, the small one burrow runs its monitors
// and network owner from (crates/burrow-runtime/src/bin/burrow-monitor.rs says why); and burrow,
// the user's command (the launcher: a planned `run` without Node, Node's CLI otherwise;
// crates/burrow-runtime/src/launcher/mod.rs), static for the same fast start.
// Renamed into place: a monitor still running the previous binary keeps its own inode.
for (const name of ['burrow-runtime', 'burrow-monitor', 'burrow']) {
  const built = path.join(ROOT, 'target', host, 'runtime', name);
  const dest = path.join(ROOT, 'target', 'release', name);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  const tmp = `${dest}.tmp-${process.pid}`;
  fs.copyFileSync(built, tmp);
  fs.chmodSync(tmp, 0o755);
  fs.renameSync(tmp, dest);
}
