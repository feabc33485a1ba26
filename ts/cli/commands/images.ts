/** Image commands: import, images, rmi, tag (pull and friends arrive with the registry client). */
import type { Command } from 'commander';
import { BurrowError } from '../../errors';
import { collect, context } from '../context';
import { formatRows, humanAge, humanSize, table } from '../format/table';

type SetExit = (code: number) => void;

function parseChanges(changes: string[]): { cmd?: string[]; env?: string[]; workingDir?: string } {
  const out: { cmd?: string[]; env?: string[]; workingDir?: string } = {};
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
      default:
        throw new BurrowError('EUSAGE', `--change ${kw} is not supported (CMD, ENV, WORKDIR)`);
    }
  }
  return out;
}

export function registerImageCommands(program: Command, setExit: SetExit): void {
  program
    .command('import')
    .description('create an image from a root filesystem tarball (plain, gzip or zstd)')
    .argument('<file>', 'tarball path')
    .argument('[reference]', 'name[:tag] for the image')
    .option('-c, --change <instruction>', 'apply CMD, ENV or WORKDIR to the image config', collect, [])
    .option('-m, --message <text>', 'commit message for the history')
    .action(async (file: string, ref: string | undefined, opts: { change: string[]; message?: string }, cmd: Command) => {
      const ctx = context(cmd);
      const settings = await ctx.settings();
      const { importTarball } = await import('../../image/importer');
      const img = await importTarball(ctx.store, settings, file, ref, { ...parseChanges(opts.change), ...(opts.message ? { message: opts.message } : {}) });
      process.stdout.write(`${img.id}\n`);
    });

  program
    .command('pull')
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
        registry: { ...(opts.tlsVerify === 'false' ? { tlsVerify: false } : {}) },
      });
      process.stdout.write(`${img.id}\n`);
    });

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
      if (opts.passwordStdin) password = require('node:fs').readFileSync(0, 'utf8').replace(/\r?\n$/, '');
      if (!password) throw new BurrowError('EUSAGE', 'login: a password is required (--password or --password-stdin)');
      const { RegistryClient } = await import('../../image/registry');
      const { login } = await import('../../image/auth');
      const client = new RegistryClient(opts.tlsVerify === 'false' ? { tlsVerify: false } : {});
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

  program
    .command('images')
    .description('list images')
    .option('-q, --quiet', 'only ids')
    .option('-a, --all', 'all images (no intermediate images exist; accepted)')
    .option('--digests', 'show digests')
    .option('--no-trunc', 'do not truncate ids')
    .option('--format <template>', 'Go-template-like format, or json')
    .action((opts: { quiet?: boolean; digests?: boolean; trunc: boolean; format?: string }, cmd: Command) => {
      const { store } = context(cmd);
      const rows: Record<string, string>[] = [];
      for (const img of store.images().sort((a, b) => (b.created ?? '').localeCompare(a.created ?? ''))) {
        const id = img.id.replace(/^sha256:/, '');
        const names = img.repoTags.length ? img.repoTags : ['<none>:<none>'];
        for (const t of names) {
          const i = t.lastIndexOf(':');
          const repo = t === '<none>:<none>' ? '<none>' : t.slice(0, i).replace(/^docker\.io\/(library\/)?/, '');
          rows.push({
            Repository: repo,
            Tag: t === '<none>:<none>' ? '<none>' : t.slice(i + 1),
            ID: opts.trunc ? id.slice(0, 12) : `sha256:${id}`,
            Digest: img.manifestDigest,
            CreatedSince: humanAge(img.created),
            CreatedAt: img.created ?? '',
            Size: humanSize(img.size),
          });
        }
      }
      if (opts.quiet) {
        process.stdout.write([...new Set(rows.map((r) => r.ID))].map((x) => `${x}\n`).join(''));
      } else if (opts.format) {
        process.stdout.write(formatRows(opts.format, rows, { Repository: 'REPOSITORY', Tag: 'TAG', ID: 'IMAGE ID', CreatedSince: 'CREATED', Size: 'SIZE' }));
      } else {
        const headers = ['REPOSITORY', 'TAG', ...(opts.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
        process.stdout.write(table(headers, rows.map((r) => [r.Repository!, r.Tag!, ...(opts.digests ? [r.Digest!] : []), r.ID!, r.CreatedSince!, r.Size!])));
      }
    });

  program
    .command('rmi')
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
          process.stderr.write(`Error: no such image: ${ref}\n`);
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
          process.stdout.write(`Untagged: ${byTag}\n`);
          continue;
        }
        if (users.length && !opts.force) {
          process.stderr.write(`Error: image ${ref} is in use by container ${users[0]!.id.slice(0, 12)} (${users[0]!.name}): remove the container first, or use -f\n`);
          failed = true;
          continue;
        }
        for (const t of img.repoTags) process.stdout.write(`Untagged: ${t}\n`);
        ctx.store.deleteImage(img.id);
        process.stdout.write(`Deleted: ${img.id}\n`);
      }
      if (failed) setExit(1);
    });

  program
    .command('tag')
    .description('give an image another name')
    .argument('<source>')
    .argument('<target>')
    .action(async (source: string, target: string, _o: unknown, cmd: Command) => {
      const { store } = context(cmd);
      const { requireImage } = await import('../../image/resolve');
      const { parseReference } = await import('../../image/reference');
      const img = requireImage(store, source);
      store.tag(img.id, parseReference(target).canonical());
    });
}
