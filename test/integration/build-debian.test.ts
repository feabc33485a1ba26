/**
 * `burrow build` on Debian base images made by the test harness (test/harness/base-images.mjs:
 * debootstrap minbase, and the same with gcc): a multi-stage C program compiled with Debian's
 * gcc and copied into a busybox stage; and equivalence with the reference, `podman build`
 * (Debian's podman 4.3 / buildah): the same Dockerfiles built by both and compared with
 * test/harness/image-compare.mjs (file trees with types, modes, owners, sizes, contents, link
 * targets, whiteouts applied; and the config fields). The differences that are deliberate are
 * listed below with their reasons. As root and as the unprivileged test user.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE, setup, type Env } from './lifecycle.helpers';
import { disposeStore } from './image-helpers';
import { baseImage, type BaseImage } from '../harness/base-images.mjs';
import { compareImages, formatDifferences, readImage } from '../harness/image-compare.mjs';
import { podmanSandbox, clientRuntime, which, type PodmanSandbox } from '../harness/clients.mjs';

let env: Env;
let gcc: BaseImage;
let minbase: BaseImage;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-build-debian-'));
fs.chmodSync(work, 0o755);
let pm: PodmanSandbox;

const T = { timeout: 600_000 };
const ok = (args: string[]) => {
  const r = env.b(args, { timeout: 590_000 });
  expect(r.code, `burrow ${args.join(' ')}:\n${r.stderr}`).toBe(0);
  return r;
};

beforeAll(async () => {
  env = setup('build-debian');
  gcc = baseImage('gcc');
  minbase = baseImage('minbase');
  ok(['load', '-i', gcc.archive]);
  ok(['load', '-i', minbase.archive]);
  if (!which('podman')) throw new Error('podman is not installed: run .ci/setup (apt-get install podman)');
  pm = podmanSandbox(fs.mkdtempSync(path.join(work, 'p-')), { runtime: clientRuntime() });
  const r = await pm.podman(['load', '-i', minbase.archive]);
  expect(r.code, r.stderr).toBe(0);
  const loaded = /Loaded image(?:\(s\))?: (\S+)/.exec(r.stdout)?.[1];
  if (loaded && loaded !== minbase.name) await pm.podman(['tag', loaded, minbase.name]);
}, 600_000);

afterAll(async () => {
  await pm?.cleanup();
  if (env) await disposeStore(env);
  fs.rmSync(work, { recursive: true, force: true });
}, 120_000);

let n = 0;
function context(files: Record<string, string>): string {
  const dir = path.join(work, `ctx-${++n}`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true, mode: 0o755 });
    fs.writeFileSync(path.join(dir, name), text, { mode: name.endsWith('.sh') ? 0o755 : 0o644 });
  }
  return dir;
}

describe('burrow build with Debian images', () => {
  it("builds a C program with Debian's gcc in one stage and copies it into a busybox stage", T, () => {
    const dir = context({
      'hello.c': '#include <stdio.h>\nint main(void) { puts("hello from C"); return 0; }\n',
      Dockerfile: [
        `FROM ${gcc.name} AS build`,
        'WORKDIR /src',
        'COPY hello.c .',
        'RUN gcc -O2 -static -o hello hello.c',
        `FROM ${IMAGE}`,
        'COPY --from=build /src/hello /usr/local/bin/hello',
        'CMD ["/usr/local/bin/hello"]',
        '',
      ].join('\n'),
    });
    ok(['build', '--progress', 'plain', '-t', 'b-hello-c', dir]);
    expect(ok(['run', '--rm', 'b-hello-c']).stdout).toBe('hello from C\n');
  });

  /**
   * Deliberate differences from podman build:
   * - history and `created`: timestamps, and BuildKit's `created_by` forms (`RUN /bin/sh -c x #
   *   buildkit`) where buildah writes its own; compared as the list of instructions elsewhere.
   * - Labels.io.buildah.version: buildah's own label.
   * - directory mtimes: layer timestamps differ between builders by nature (compareMtime false).
   * - ArgsEscaped: BuildKit sets it on every CMD (Docker's image spec field); buildah does not.
   * - /srv, the parent COPY --chown=nobody:nogroup created: BuildKit gives the directories a
   *   COPY --chown creates to that owner (burrow too); buildah makes them 0:0.
   */
  const IGNORE_FIELDS = ['Labels.io.buildah.version', 'History', 'ArgsEscaped'];
  const IGNORE_PATHS = [/^\/srv$/];

  /**
   * Builds `dir` with burrow (as b-NAME) and with podman build (as localhost/NAME), saves both, and
   * expects the same file tree and config, apart from the deliberate differences listed above.
   */
  async function sameAsPodman(dir: string, name: string): Promise<void> {
    ok(['build', '--progress', 'plain', '-t', `b-${name}`, dir]);
    const ours = path.join(work, `ours-${name}.tar`);
    ok(['save', '-o', ours, `b-${name}`]);
    const p = await pm.podman(['build', '--network', 'none', '-t', `localhost/${name}`, dir], { timeoutMs: 590_000 });
    expect(p.code, p.stderr).toBe(0);
    const theirs = path.join(work, `theirs-${name}.tar`);
    const s = await pm.podman(['save', '--format', 'oci-archive', '-o', theirs, `localhost/${name}`]);
    expect(s.code, s.stderr).toBe(0);
    const diffs = compareImages(readImage(ours), readImage(theirs), { ignoreFields: IGNORE_FIELDS, ignorePaths: IGNORE_PATHS });
    expect(diffs, formatDifferences(diffs)).toEqual([]);
  }

  it('builds the same image as podman build (file tree and config)', T, async () => {
    const dir = context({
      'files/a.txt': 'a\n',
      'files/sub/b.txt': 'b\n',
      'files/skip.log': 'ignored\n',
      '.dockerignore': '*.log\nfiles/*.log\n',
      'run.sh': '#!/bin/sh\necho run\n',
      Dockerfile: [
        `FROM ${minbase.name}`,
        'ARG GREETING=hi',
        'ENV APP=/opt/app LANG=C.UTF-8',
        'WORKDIR /opt/app',
        'COPY files/ ./',
        'COPY --chmod=755 run.sh /usr/local/bin/run.sh',
        'COPY --chown=nobody:nogroup files/a.txt /srv/owned.txt',
        'RUN echo "$GREETING" > built.txt && ln -s built.txt link && mkdir -p /var/data && rm -f /etc/issue.net && chmod 700 /var/data',
        'USER nobody',
        'EXPOSE 8080/tcp',
        'VOLUME /var/data',
        'LABEL org.example.name=equivalence',
        'STOPSIGNAL SIGINT',
        'ENTRYPOINT ["/usr/local/bin/run.sh"]',
        'CMD ["--help"]',
        '',
      ].join('\n'),
    });
    await sameAsPodman(dir, 'equiv');
  });

  it('builds the same multi-stage image as podman build (COPY --from, symlinks, hard links, deletions)', T, async () => {
    const dir = context({
      'src/tool.sh': '#!/bin/sh\necho tool\n',
      Dockerfile: [
        `FROM ${minbase.name} AS base`,
        'ENV PREFIX=/opt/tool',
        'RUN mkdir -p $PREFIX/bin && ln -s $PREFIX/bin /tbin && echo x > /hard1 && ln /hard1 /hard2 && rm -rf /usr/share/doc',
        // (No COPY heredoc here: Debian's podman 4.3 cannot build one; build.test.ts covers them.)
        'RUN echo "prefix is $PREFIX" > $PREFIX/README',
        'FROM base AS extra',
        'COPY src/ /opt/tool/bin/',
        'RUN chmod 750 /opt/tool/bin/tool.sh && mkdir -p /var/lib/extra && echo data > /var/lib/extra/d',
        'FROM base',
        'COPY --from=extra /opt/tool/bin /opt/tool/bin',
        'COPY --from=extra /var/lib/extra /var/lib/extra',
        'RUN rm /hard2 && mkdir -p /empty',
        'WORKDIR /opt/tool',
        'CMD ["/opt/tool/bin/tool.sh"]',
        '',
      ].join('\n'),
    });
    await sameAsPodman(dir, 'equiv2');
  });
});
