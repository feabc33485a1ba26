/**
 * `burrow bundle [--userns MODE] [--network host|none] [--read-only] [--force] [--pull P]
 * [--platform P] IMAGE DIR [COMMAND...]`: an image as an OCI runtime bundle for another runtime
 * (Slurm's oci.conf, containerd, podman, runc). The work is the engine's (ts/engine/bundle.ts);
 * this prints the bundle's path on stdout and what it did on stderr.
 */
import { Command, Option } from 'commander';
import type { BundleRequest, BundleUserns } from '../../engine/bundle';
import type { PullPolicy } from '../../engine/create';
import { context } from '../context';
import { cliHooks } from './containers';

interface BundleFlags {
  userns: string;
  network: string;
  readOnly?: boolean;
  force?: boolean;
  pull: string;
  platform?: string;
  quiet?: boolean;
}

export function registerBundleCommand(program: Command): void {
  program
    .command('bundle')
    .description('write an image as an OCI runtime bundle (DIR/config.json, DIR/rootfs) for runc-compatible runtimes: srun --container=DIR, runc, burrow-runtime')
    .argument('<image>', 'the image, found or pulled as `run` does')
    .argument('<dir>', 'the bundle directory: new, or empty (a bundle there only with --force)')
    .argument('[command...]', "replaces the image's Cmd")
    .passThroughOptions()
    .addOption(
      new Option('--userns <mode>', "the bundle's id mapping and its files' owners: root (you are container root, every file yours; no subordinate ids needed), keep-id (you keep your uid inside; needs a subordinate range), subids (the image's owners, in your subordinate range), host (root only: no user namespace)")
        .choices(['root', 'keep-id', 'subids', 'host'])
        .default('root'),
    )
    .addOption(new Option('--network <mode>', "host: the node's network (default); none: a network namespace of its own").choices(['host', 'none']).default('host'))
    .option('--read-only', 'a read-only root, with tmpfs on /tmp, /var/tmp and /run')
    .option('-f, --force', 'replace a bundle already at DIR')
    .addOption(new Option('--pull <policy>', 'pull the image: missing (default), always, never').choices(['always', 'missing', 'never']).default('missing'))
    .option('--platform <platform>', 'the platform to pull (os/arch[/variant])')
    .option('-q, --quiet', 'print only the bundle path')
    .action(async (image: string, dir: string, command: string[], f: BundleFlags, cmd: Command) => {
      const ctx = context(cmd);
      const { makeBundle } = await import('../../engine/bundle');
      const req: BundleRequest = {
        image,
        dir,
        command,
        userns: f.userns as BundleUserns,
        network: f.network as 'host' | 'none',
        readOnly: !!f.readOnly,
        force: !!f.force,
        pull: f.pull as PullPolicy,
        ...(f.platform ? { platform: f.platform } : {}),
      };
      const r = await makeBundle(ctx, req, cliHooks(ctx));
      if (!f.quiet) {
        const maps = r.uidMappings.length ? r.uidMappings.map(([c, h, n]) => `${c}->${h}${n > 1 ? ` (${n} ids)` : ''}`).join(', ') : 'no user namespace';
        const dropped = r.setidDropped ? `, ${r.setidDropped} set-id bit${r.setidDropped === 1 ? '' : 's'} dropped` : '';
        process.stderr.write(`bundle of ${r.imageId.slice(0, 19)}: ${r.files} files; --userns ${r.userns}: uids ${maps}, runs as ${r.user.uid}:${r.user.gid}${dropped}\n`);
      }
      process.stdout.write(`${r.dir}\n`);
    });
}
