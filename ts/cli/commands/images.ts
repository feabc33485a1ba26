/** Image commands: import, pull, push, save, load, login, logout, images, rmi, tag, history, and the `image` group. */
import { Option, type Command } from 'commander';
import { BurrowError, EXIT, errorText } from '../../errors';
import { collect, context } from '../context';
import { ago, formatRows, humanSize, table } from '../format/table';
import { writeOut } from '../write-out';
import { withProgress } from '../transfer';
import { shownRepository } from '../../engine/image-names';

export { referenceFilter, shownRepository, shownTag } from '../../engine/image-names';

type SetExit = (code: number) => void;

/**
 * Runs a pull or push with its progress drawn on stderr (redrawn in place at a terminal, a plain
 * log elsewhere, nothing with -q): the engine reports events, this turns them into text.
 */
/** Go's stringutils.Ellipsis, as `docker history` truncates CREATED BY. */
function ellipsis(s: string, max: number): string {
  const chars = [...s];
  return chars.length > max ? `${chars.slice(0, max - 1).join('')}…` : s;
}

/**
 * `docker history`'s rows, newest first: the image's id on the top entry and `<missing>` below
 * (layers pulled have no image of their own), the size of the layer an entry made (0B for an
 * `empty_layer` entry), CREATED BY cut at 45 characters unless `trunc` is false.
 */
export function historyRows(
  history: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean }[],
  imageId: string,
  layerSizes: number[],
  trunc: boolean,
  now = Date.now(),
): { ID: string; CreatedSince: string; CreatedAt: string; CreatedBy: string; Size: string; Comment: string }[] {
  let layer = 0;
  const rows = history.map((h) => {
    const size = h.empty_layer ? 0 : (layerSizes[layer++] ?? 0);
    const by = (h.created_by ?? '').replace(/\t/g, ' ');
    return { ID: '<missing>', CreatedSince: ago(h.created, now), CreatedAt: h.created ?? '', CreatedBy: trunc ? ellipsis(by, 45) : by, Size: humanSize(size), Comment: h.comment ?? '' };
  });
  rows.reverse();
  const id = imageId.replace(/^sha256:/, '');
  if (rows[0]) rows[0].ID = trunc ? id.slice(0, 12) : `sha256:${id}`;
  return rows;
}

/**
 * The image commands, at the top level (`burrow rmi`) and again in the `image` group (`burrow
 * image rm`), as Docker has them. `withGroup` false leaves the group out (see main.ts).
 */
export function registerImageCommands(program: Command, setExit: SetExit, withGroup = true): void {
  // The group exists either way (`image prune` joins it, ts/cli/commands/system.ts); its copies
  // of the top-level commands only when it may be used.
  const group = program.command('image').description('manage images');
  const image = withGroup ? group : undefined;
  /** Defines a command as `top` and as `image NAME` (with the group's other names as aliases). */
  const both = (top: string, inGroup: string[], define: (c: Command) => void) => {
    define(program.command(top));
    if (image) define(image.command(inGroup[0]!).aliases(inGroup.slice(1)));
  };

  both('import', ['import'], (c) =>
    c
    .description('create an image from a root filesystem tarball (plain, gzip or zstd) or an Apptainer/Singularity SIF')
    .argument('<file>', 'tarball path')
    .argument('[reference]', 'name[:tag] for the image')
    .option('-c, --change <instruction>', 'apply CMD, ENV, WORKDIR, EXPOSE or LABEL to the image config', collect, [])
    .option('-m, --message <text>', 'commit message for the history')
    .action(async (file: string, ref: string | undefined, opts: { change: string[]; message?: string }, cmd: Command) => {
      const { importImage } = await import('../../engine/images');
      const img = await importImage(context(cmd), { source: { file }, ...(ref ? { reference: ref } : {}), changes: opts.change, ...(opts.message ? { message: opts.message } : {}) }, { warn: (m) => process.stderr.write(`burrow: warning: ${m}\n`) });
      process.stdout.write(`${img.id}\n`);
    }),
  );

  both('pull', ['pull'], (c) =>
    c
    .description('pull an image from a registry')
    .argument('<image>', 'reference, e.g. alpine, quay.io/x/y:tag, host:5000/name@sha256:…')
    .option('-q, --quiet', 'no progress output')
    .option('--platform <os/arch[/variant]>', 'platform to select from a multi-platform image')
    .option('--tls-verify <bool>', 'verify TLS certificates (default true)')
    .action(async (ref: string, opts: { quiet?: boolean; platform?: string; tlsVerify?: string }, cmd: Command) => {
      const { pullImage } = await import('../../engine/images');
      const img = await withProgress(opts.quiet, (hooks) =>
        pullImage(context(cmd), { reference: ref, ...(opts.platform ? { platform: opts.platform } : {}), ...(opts.tlsVerify === 'false' ? { registry: { tlsVerify: false } } : {}), interruptible: true }, hooks),
      );
      process.stdout.write(`${img.id}\n`);
    }),
  );

  program
    .command('login')
    .description('store credentials for a registry (0600, ~/.config/burrow/auth.json)')
    .argument('<registry>')
    .option('-u, --username <user>')
    .option('-p, --password <password>')
    .option('--password-stdin', 'read the password from stdin')
    .option('--tls-verify <bool>', 'verify TLS certificates (default true)')
    .action(async (registry: string, opts: { username?: string; password?: string; passwordStdin?: boolean; tlsVerify?: string }) => {
      if (!opts.username) throw new BurrowError('EUSAGE', 'login: --username is required');
      let password = opts.password;
      // node:fs only for --password-stdin (the module loads no more at start-up than it needs).
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      if (opts.passwordStdin) password = (require('node:fs') as typeof import('node:fs')).readFileSync(0, 'utf8').replace(/\r?\n$/, '');
      if (!password) throw new BurrowError('EUSAGE', 'login: a password is required (--password or --password-stdin)');
      const { checkLogin } = await import('../../engine/images');
      const { login } = await import('../../image/auth');
      await checkLogin({ serverAddress: registry, username: opts.username, password, ...(opts.tlsVerify === 'false' ? { registry: { tlsVerify: false } } : {}) });
      login(registry, opts.username, password);
      process.stdout.write('Login Succeeded!\n');
    });

  program
    .command('logout')
    .description('remove stored credentials for a registry')
    .argument('<registry>')
    .action(async (registry: string) => {
      const { logout } = await import('../../image/auth');
      const r = logout(registry);
      process.stdout.write(r.removed ? `Removed login credentials for ${registry}\n` : `Not logged in to ${registry}\n`);
      for (const f of r.remaining) process.stderr.write(`note: ${f} still holds credentials for ${registry}\n`);
    });

  both('push', ['push'], (c) =>
    c
    .description('push an image to a registry (blobs it has are skipped, blobs of the same registry mounted)')
    .argument('<image>', 'local image: name or id')
    .argument('[destination]', 'registry/repository[:tag] to push to (default: the image name)')
    .option('-q, --quiet', 'no progress output')
    .option('--tls-verify <bool>', 'verify TLS certificates (default true)')
    .option('--digestfile <file>', 'write the pushed manifest digest to this file')
    .action(async (image: string, destination: string | undefined, opts: { quiet?: boolean; tlsVerify?: string; digestfile?: string }, cmd: Command) => {
      const { pushImage } = await import('../../engine/images');
      const r = await withProgress(opts.quiet, (hooks) =>
        pushImage(context(cmd), { image, ...(destination ? { destination } : {}), ...(opts.tlsVerify === 'false' ? { registry: { tlsVerify: false } } : {}) }, hooks),
        'push',
      );
      // node:fs only for --digestfile (the module loads no more at start-up than it needs).
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      if (opts.digestfile) (require('node:fs') as typeof import('node:fs')).writeFileSync(opts.digestfile, r.digest);
      if (opts.quiet) process.stdout.write(`${r.digest}\n`);
    }),
  );

  both('save', ['save'], (c) =>
    c
    .description('write images to a tar archive (docker-archive, as `docker save`, or oci-archive)')
    .argument('<images...>')
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .addOption(new Option('--format <format>', 'archive format').choices(['docker-archive', 'oci-archive']).default('docker-archive'))
    .action(async (refs: string[], opts: { output?: string; format: 'docker-archive' | 'oci-archive' }, cmd: Command) => {
      const ctx = context(cmd);
      const fs = await import('node:fs');
      const { saveImages } = await import('../../engine/images');
      if (!opts.output) {
        if (process.stdout.isTTY) throw new BurrowError('EUSAGE', 'save: refusing to write an archive to a terminal', 'use -o FILE or redirect stdout');
        await saveImages(ctx, refs, process.stdout, opts.format);
        return;
      }
      const { writeAside } = await import('../write-aside');
      await writeAside('save', opts.output, async (fd) => {
        // The fd stays open: writeAside syncs and closes it after the archive's last byte.
        await saveImages(ctx, refs, fs.createWriteStream('', { fd, autoClose: false }), opts.format);
      });
    }),
  );

  both('load', ['load'], (c) =>
    c
    .description('load images from a tar archive (docker-archive or oci-archive, plain or gzip)')
    .option('-i, --input <file>', 'read from this file instead of stdin')
    .option('-q, --quiet', 'print only the loaded ids')
    .action(async (opts: { input?: string; quiet?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      const fs = await import('node:fs');
      if (!opts.input && process.stdin.isTTY) throw new BurrowError('EUSAGE', 'load: no archive given', 'use -i FILE or redirect stdin');
      if (opts.input && !fs.existsSync(opts.input)) throw new BurrowError('EUSAGE', `load: no such file: ${opts.input}`);
      const { loadImages, loadedLines } = await import('../../engine/images');
      const source = opts.input ? fs.createReadStream(opts.input, { highWaterMark: 1 << 20 }) : process.stdin;
      const loaded = await loadImages(ctx, source, opts.input ?? 'stdin', { warn: (m) => process.stderr.write(`burrow: warning: ${m}\n`) });
      process.stdout.write(loadedLines(loaded, !!opts.quiet).join(''));
    }),
  );

  both('images', ['ls', 'list'], (c) =>
    c
    .description('list images, or those of one repository: images [REPOSITORY[:TAG]]')
    .argument('[reference]', 'REPOSITORY[:TAG] to list (* and ? match as in Docker)')
    .option('-q, --quiet', 'only ids')
    .option('-a, --all', 'all images (no intermediate images exist; accepted)')
    .option('--digests', 'show digests')
    .option('--no-trunc', 'do not truncate ids')
    .option('--format <template>', 'Go-template-like format, or json')
    .action(async (reference: string | undefined, opts: { quiet?: boolean; digests?: boolean; trunc: boolean; format?: string }, cmd: Command) => {
      const { listImages } = await import('../../engine/images');
      const images = await listImages(context(cmd), reference === undefined ? {} : { reference: [reference] }, { sizes: !opts.quiet, labels: false });
      const rows: Record<string, string>[] = [];
      for (const img of images) {
        const id = img.id.replace(/^sha256:/, '');
        for (const [full, tag] of img.names) {
          // As Docker: the digest the registry knows this image by in this repository (for a
          // multi-platform image, the index's), not the local manifest's.
          const rd = img.repoDigests.find((d) => full !== undefined && d.startsWith(`${full}@`));
          rows.push({
            Repository: full === undefined ? '<none>' : shownRepository(full),
            Tag: tag,
            ID: opts.trunc ? id.slice(0, 12) : `sha256:${id}`,
            Digest: rd ? rd.slice(rd.indexOf('@') + 1) : '<none>',
            CreatedSince: ago(img.created),
            CreatedAt: img.created ?? '',
            Size: opts.quiet ? '' : humanSize(img.size),
          });
        }
      }
      if (opts.quiet) {
        writeOut([...new Set(rows.map((r) => r.ID))].map((x) => `${x}\n`).join(''));
      } else if (opts.format) {
        writeOut(formatRows(opts.format, rows, { Repository: 'REPOSITORY', Tag: 'TAG', ID: 'IMAGE ID', CreatedSince: 'CREATED', Size: 'SIZE' }));
      } else {
        const headers = ['REPOSITORY', 'TAG', ...(opts.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
        writeOut(table(headers, rows.map((r) => [r.Repository!, r.Tag!, ...(opts.digests ? [r.Digest!] : []), r.ID!, r.CreatedSince!, r.Size!])));
      }
    }),
  );

  both('rmi', ['rm', 'remove'], (c) =>
    c
    .description('remove images (refuses an image a container uses, unless -f)')
    .argument('<images...>')
    .option('-f, --force', 'remove even if containers use it')
    .action(async (refs: string[], opts: { force?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      const { removeImage } = await import('../../engine/images');
      let failed = false;
      for (const ref of refs) {
        try {
          const r = await removeImage(ctx, ref, { force: !!opts.force });
          process.stdout.write(r.items.map((i) => ('Untagged' in i ? `Untagged: ${i.Untagged}\n` : `Deleted: ${i.Deleted}\n`)).join(''));
          if (r.kept) process.stderr.write(`note: ${r.kept} layer(s) or blob(s) of ${ref} kept while a pull, load or import runs; \`burrow image prune\` removes them later\n`);
        } catch (err) {
          process.stderr.write(errorText(err));
          failed = true;
        }
      }
      if (failed) setExit(EXIT.ENGINE);
    }),
  );

  both('history', ['history'], (c) =>
    c
    .description("show an image's history: its config's history entries, newest first, with the size of each layer")
    .argument('<image>')
    .option('-q, --quiet', 'only image ids')
    .option('--no-trunc', 'do not truncate the output')
    .option('--format <template>', 'Go-template-like format, or json')
    .action(async (ref: string, opts: { quiet?: boolean; trunc: boolean; format?: string }, cmd: Command) => {
      const { imageHistory } = await import('../../engine/images');
      const h = await imageHistory(context(cmd), ref);
      const rows = historyRows(
        h.entries.map((e) => ({ ...(e.created ? { created: e.created } : {}), created_by: e.createdBy, comment: e.comment, empty_layer: e.emptyLayer })),
        h.id,
        h.entries.filter((e) => !e.emptyLayer).map((e) => e.size),
        opts.trunc,
      );
      if (opts.quiet) process.stdout.write(rows.map((r) => `${r.ID}\n`).join(''));
      else if (opts.format) process.stdout.write(formatRows(opts.format, rows, { ID: 'IMAGE', CreatedSince: 'CREATED', CreatedBy: 'CREATED BY', Size: 'SIZE', Comment: 'COMMENT' }));
      else process.stdout.write(table(['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT'], rows.map((r) => [r.ID, r.CreatedSince, r.CreatedBy, r.Size, r.Comment])));
    }),
  );

  if (image) {
    image
      .command('inspect')
      .description('low-level information on images, as JSON')
      .argument('<images...>')
      .option('-f, --format <template>', 'Go-template-like format')
      .action(async (names: string[], opts: { format?: string }, cmd: Command) => {
        const ctx = context(cmd);
        const { inspectImage } = await import('../../engine/images');
        const { render } = await import('../format/table');
        const out: object[] = [];
        for (const n of names) {
          try {
            out.push(await inspectImage(ctx, n));
          } catch (err) {
            if (!(err instanceof BurrowError && err.code === 'EIMAGE_NOT_FOUND')) throw err;
            process.stderr.write(errorText(new BurrowError('EIMAGE_NOT_FOUND', `no such image: ${n}`)));
            setExit(EXIT.ENGINE);
          }
        }
        if (opts.format) process.stdout.write(out.map((o) => `${render(opts.format!, o as Record<string, unknown>)}\n`).join(''));
        else process.stdout.write(`${JSON.stringify(out, null, 4)}\n`);
      });
  }

  if (image) {
    // One-file images (docs/hpc-images.md): the flattened image as a squashfs for `burrow run FILE`.
    image
      .command('convert')
      .description('write an image as one file (a squashfs) that `burrow run FILE` runs without unpacking')
      .requiredOption('--format <format>', 'the file\'s format: squashfs')
      .option('--processors <n>', 'mksquashfs threads (default: every CPU)')
      .argument('<image>')
      .argument('<file>')
      .action(async (name: string, file: string, opts: { format: string; processors?: string }, cmd: Command) => {
        const { convertImage } = await import('../../engine/squash');
        if (opts.processors !== undefined && !/^\d+$/.test(opts.processors)) throw new BurrowError('EUSAGE', `invalid --processors ${opts.processors}: want a whole number >= 1`);
        const r = await convertImage(context(cmd), { image: name, format: opts.format, output: file, ...(opts.processors !== undefined ? { processors: Number(opts.processors) } : {}) }, { warn: (m) => process.stderr.write(`burrow: warning: ${m}\n`) });
        process.stdout.write(`${r.file}\n`);
      });
  }

  both('tag', ['tag'], (c) =>
    c
    .description('give an image another name')
    .argument('<source>')
    .argument('<target>')
    .action(async (source: string, target: string, _o: unknown, cmd: Command) => {
      const { tagImage } = await import('../../engine/images');
      tagImage(context(cmd), source, target);
    }),
  );
}
