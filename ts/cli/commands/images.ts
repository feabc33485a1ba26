/** Image commands: import, pull, push, save, load, login, logout, images, rmi, tag, history, and the `image` group. */
import { Option, type Command } from 'commander';
import { BurrowError, EXIT, errorText } from '../../errors';
import { collect, context, registryOptions } from '../context';
import { ago, formatRows, humanSize, table } from '../format/table';
import { writeOut } from '../write-out';

type SetExit = (code: number) => void;

function parseChanges(changes: string[]): { cmd?: string[]; env?: string[]; workingDir?: string; exposedPorts?: string[] } {
  const out: { cmd?: string[]; env?: string[]; workingDir?: string; exposedPorts?: string[] } = {};
  for (const c of changes) {
    const m = /^(\w+)\s+(.*)$/s.exec(c.trim());
    if (!m) throw new BurrowError('EUSAGE', `invalid --change ${c}`);
    const [, kw = '', arg = ''] = m;
    const list = () => (arg.trim().startsWith('[') ? (JSON.parse(arg) as string[]) : ['/bin/sh', '-c', arg]);
    switch (kw.toUpperCase()) {
      case 'CMD':
        out.cmd = list();
        break;
      case 'ENV':
        out.env = [...(out.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']), arg.includes('=') ? arg : arg.replace(/\s+/, '=')];
        break;
      case 'WORKDIR':
        out.workingDir = arg;
        break;
      case 'EXPOSE':
        for (const p of arg.trim().split(/\s+/)) {
          if (!/^\d+(-\d+)?(\/(tcp|udp))?$/.test(p)) throw new BurrowError('EUSAGE', `invalid --change EXPOSE ${p}: want PORT[/tcp|/udp]`);
          (out.exposedPorts ??= []).push(p);
        }
        break;
      default:
        throw new BurrowError('EUSAGE', `--change ${kw} is not supported (CMD, ENV, WORKDIR, EXPOSE)`);
    }
  }
  return out;
}

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

/** The repository as `images` shows it: Docker Hub's official images without their prefix. */
export function shownRepository(full: string): string {
  return full.replace(/^docker\.io\/(library\/)?/, '');
}

/** A `repository:tag` as `images` shows it (what `rmi` says it untagged). */
export function shownTag(repoTag: string): string {
  const i = repoTag.lastIndexOf(':');
  return `${shownRepository(repoTag.slice(0, i))}${repoTag.slice(i)}`;
}

/** Go's path.Match for one name: `*` any run without `/`, `?` one such character. */
function glob(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}$`);
}

/**
 * `images REPOSITORY[:TAG]` as Docker filters: the repository as shown (`busybox`,
 * `localhost:5000/busybox`) or in full (`docker.io/library/busybox`), then the tag if given.
 * Returns a predicate over a stored repository (in full) and tag.
 */
export function referenceFilter(reference: string): (full: string, tag: string) => boolean {
  const at = reference.lastIndexOf(':');
  const hasTag = at > reference.lastIndexOf('/');
  const repo = hasTag ? reference.slice(0, at) : reference;
  const tag = hasTag ? glob(reference.slice(at + 1)) : undefined;
  const first = repo.split('/')[0]!;
  // A name without a registry is Docker Hub's (library/ for a single component).
  const hub = repo.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost') ? undefined : `docker.io/${repo.includes('/') ? repo : `library/${repo}`}`;
  const names = [glob(repo), ...(hub ? [glob(hub)] : [])];
  return (full, t) => names.some((n) => n.test(full) || n.test(shownRepository(full))) && (!tag || tag.test(t));
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
    .description('create an image from a root filesystem tarball (plain, gzip or zstd)')
    .argument('<file>', 'tarball path')
    .argument('[reference]', 'name[:tag] for the image')
    .option('-c, --change <instruction>', 'apply CMD, ENV, WORKDIR or EXPOSE to the image config', collect, [])
    .option('-m, --message <text>', 'commit message for the history')
    .action(async (file: string, ref: string | undefined, opts: { change: string[]; message?: string }, cmd: Command) => {
      const ctx = context(cmd);
      const settings = await ctx.settings();
      const { importTarball } = await import('../../image/importer');
      const img = await importTarball(ctx.store, settings, file, ref, { ...parseChanges(opts.change), ...(opts.message ? { message: opts.message } : {}) });
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
      const ctx = context(cmd);
      const settings = await ctx.settings();
      const { pullImage } = await import('../../image/pull');
      const img = await pullImage(ctx.store, settings, ref, {
        quiet: !!opts.quiet,
        ...(opts.platform ? { platform: opts.platform } : {}),
        registry: registryOptions(opts.tlsVerify === 'false' ? { tlsVerify: false } : {}),
      });
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
      const { RegistryClient } = await import('../../image/registry');
      const { login } = await import('../../image/auth');
      const client = new RegistryClient(registryOptions(opts.tlsVerify === 'false' ? { tlsVerify: false } : {}));
      try {
        await client.checkLogin(registry, { username: opts.username, password });
      } finally {
        client.close();
      }
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
      const { store } = context(cmd);
      const { pushImage } = await import('../../image/push');
      const r = await pushImage(store, image, destination, { quiet: !!opts.quiet, registry: registryOptions(opts.tlsVerify === 'false' ? { tlsVerify: false } : {}) });
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
      const { store } = context(cmd);
      const fs = await import('node:fs');
      const { saveImages } = await import('../../image/archive');
      if (!opts.output) {
        if (process.stdout.isTTY) throw new BurrowError('EUSAGE', 'save: refusing to write an archive to a terminal', 'use -o FILE or redirect stdout');
        await saveImages(store, refs, process.stdout, opts.format);
        return;
      }
      const { writeAside } = await import('../write-aside');
      await writeAside('save', opts.output, async (fd) => {
        // The fd stays open: writeAside syncs and closes it after the archive's last byte.
        await saveImages(store, refs, fs.createWriteStream('', { fd, autoClose: false }), opts.format);
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
      const settings = await ctx.settings();
      const { archiveInput, loadArchive } = await import('../../image/archive');
      const { parseReference } = await import('../../image/reference');
      const source = opts.input ? fs.createReadStream(opts.input, { highWaterMark: 1 << 20 }) : process.stdin;
      const loaded = await loadArchive(ctx.store, settings, archiveInput(source), opts.input ?? 'stdin');
      for (const l of loaded) {
        if (opts.quiet) process.stdout.write(`${l.id}\n`);
        else if (l.names.length) for (const n of l.names) process.stdout.write(`Loaded image: ${parseReference(n).familiar()}\n`);
        else process.stdout.write(`Loaded image ID: ${l.id}\n`);
      }
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
      const { store } = context(cmd);
      const wanted = reference === undefined ? undefined : referenceFilter(reference);
      // The size `system df` shows too: what the image's content takes in the store.
      const { imageDiskSize } = await import('../../storage/refs');
      const sizes = new Map<string, number>();
      const rows: Record<string, string>[] = [];
      for (const img of store.images().sort((a, b) => (b.created ?? '').localeCompare(a.created ?? ''))) {
        const id = img.id.replace(/^sha256:/, '');
        // [repository, tag]: one row per tag; an untagged image pulled by digest shows its
        // repository with tag <none>, as in Docker.
        const names: [string | undefined, string][] = img.repoTags.length
          ? img.repoTags.map((t) => [t.slice(0, t.lastIndexOf(':')), t.slice(t.lastIndexOf(':') + 1)])
          : img.repoDigests.length
            ? [...new Set(img.repoDigests.map((d) => d.slice(0, d.indexOf('@'))))].map((r) => [r, '<none>'])
            : [[undefined, '<none>']];
        // Its size once, however many tags show it.
        let size: string | undefined;
        const sizeOf = (): string => (size ??= humanSize(imageDiskSize(store, img, sizes)));
        for (const [full, tag] of names) {
          if (wanted && (full === undefined || !wanted(full, tag))) continue;
          const repo = full === undefined ? '<none>' : shownRepository(full);
          // As Docker: the digest the registry knows this image by in this repository (for a
          // multi-platform image, the index's), not the local manifest's.
          const rd = img.repoDigests.find((d) => full !== undefined && d.startsWith(`${full}@`));
          rows.push({
            Repository: repo,
            Tag: tag,
            ID: opts.trunc ? id.slice(0, 12) : `sha256:${id}`,
            Digest: rd ? rd.slice(rd.indexOf('@') + 1) : '<none>',
            CreatedSince: ago(img.created),
            CreatedAt: img.created ?? '',
            Size: opts.quiet ? '' : sizeOf(),
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
      const { findImage } = await import('../../image/resolve');
      const { parseReference } = await import('../../image/reference');
      const { Containers } = await import('../../container/records');
      let failed = false;
      for (const ref of refs) {
        const img = findImage(ctx.store, ref);
        if (!img) {
          process.stderr.write(errorText(new BurrowError('EIMAGE_NOT_FOUND', `no such image: ${ref}`)));
          failed = true;
          continue;
        }
        const users = new Containers(ctx.store).all().filter((c) => c.image === img.id);
        let byTag: string | undefined;
        try {
          const r = parseReference(ref);
          if (img.repoTags.includes(r.canonical())) byTag = r.canonical();
        } catch {
          /* an id */
        }
        if (byTag && img.repoTags.length > 1) {
          ctx.store.untag(byTag);
          process.stdout.write(`Untagged: ${shownTag(byTag)}\n`);
          continue;
        }
        if (!byTag && img.repoTags.length > 1 && !opts.force) {
          process.stderr.write(errorText(new BurrowError('EIMAGE_IN_USE', `image ${ref} is referenced by several names (${img.repoTags.map(shownTag).join(', ')}): remove them by name, or use -f`)));
          failed = true;
          continue;
        }
        if (users.length && !opts.force) {
          process.stderr.write(errorText(new BurrowError('EIMAGE_IN_USE', `image ${ref} is in use by container ${users[0]!.id.slice(0, 12)} (${users[0]!.name}): remove the container first, or use -f`)));
          failed = true;
          continue;
        }
        for (const t of img.repoTags) process.stdout.write(`Untagged: ${shownTag(t)}\n`);
        ctx.store.deleteImage(img.id);
        process.stdout.write(`Deleted: ${img.id}\n`);
        // Its layers and blobs that nothing else uses go with it (storage/prune.ts).
        const { reclaimImage } = await import('../../storage/prune');
        const gc = await reclaimImage(ctx.store, await ctx.settings(), img);
        if (gc.kept) process.stderr.write(`note: ${gc.kept} layer(s) or blob(s) of ${ref} kept while a pull, load or import runs; \`burrow image prune\` removes them later\n`);
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
      const { store } = context(cmd);
      const { requireImage } = await import('../../image/resolve');
      const { imageConfig } = await import('../../container/create');
      const img = requireImage(store, ref);
      // Each layer's size unpacked, as Docker shows it (the compressed size for one not unpacked).
      const { layerBytes } = await import('../../storage/refs');
      const sizes = img.layers.map((l) => {
        const record = store.layer(l.diffId);
        return record ? layerBytes(store, { hex: l.diffId.replace(/^sha256:/, ''), record, hasDir: true, mtimeMs: 0 }) : l.size;
      });
      const rows = historyRows(imageConfig(store, img).history, img.id, sizes, opts.trunc);
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
        const { store } = context(cmd);
        const { findImage } = await import('../../image/resolve');
        const { inspectImage } = await import('../../container/inspect');
        const { render } = await import('../format/table');
        const out: object[] = [];
        for (const n of names) {
          const img = findImage(store, n);
          if (img) out.push(inspectImage(store, img));
          else {
            process.stderr.write(errorText(new BurrowError('EIMAGE_NOT_FOUND', `no such image: ${n}`)));
            setExit(EXIT.ENGINE);
          }
        }
        if (opts.format) process.stdout.write(out.map((o) => `${render(opts.format!, o as Record<string, unknown>)}\n`).join(''));
        else process.stdout.write(`${JSON.stringify(out, null, 4)}\n`);
      });
  }

  both('tag', ['tag'], (c) =>
    c
    .description('give an image another name')
    .argument('<source>')
    .argument('<target>')
    .action(async (source: string, target: string, _o: unknown, cmd: Command) => {
      const { store } = context(cmd);
      const { requireImage } = await import('../../image/resolve');
      const { parseReference } = await import('../../image/reference');
      const img = requireImage(store, source);
      store.tag(img.id, parseReference(target).canonical());
    }),
  );
}
