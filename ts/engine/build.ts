/**
 * `burrow build` in the engine (CONTRACT, lead; implemented by the `bengine` branch): the CLI
 * (`burrow build`) and the Engine API (`POST /build`, later) both turn their input into a
 * BuildRequest and show the BuildEvents as they come.
 *
 * How a build runs (docs/architecture.md, "Builds"):
 * - ts/build/dockerfile/{parse,expand}.ts read the Dockerfile; ts/build/ignore.ts applies
 *   .dockerignore; the executor (ts/build/) walks the stages the target needs, independent stages
 *   in parallel.
 * - FROM: an image of the store, pulled as `pull` does when missing (or with pull: 'always'),
 *   `scratch`, or an earlier stage's result.
 * - RUN: a container of the stage so far (same runtime, id mapping and rootfs driver as `run`,
 *   the build's network), with the step's mounts; its layer is the container's overlay upper
 *   directory packed as it is (ts/storage/pack.ts `packUpper`), then unpacked into the store as
 *   every layer is.
 * - COPY/ADD: a layer made straight from the sources (`packEntries`), no container.
 * - Config-only instructions (ENV, LABEL, CMD, …) change the config and add history entries with
 *   `empty_layer: true`, as Docker writes them.
 * - Cache: each step's result is keyed by (parent result, the instruction after expansion, the
 *   content of what COPY/ADD bring in, the build args it uses); a hit reuses the layer and config.
 */
import type { Hooks } from './context';

export interface BuildSecret {
  id: string;
  /** A file to read, or an environment variable (`env=NAME`). */
  src?: string;
  env?: string;
}

export type BuildOutput =
  | { type: 'image' } // the default: an image in the store, tagged with `tags`
  | { type: 'oci' | 'docker' | 'tar'; dest: string } // an OCI layout tar, a docker archive, a tar of the final rootfs ('-' for stdout)
  | { type: 'local'; dest: string }; // the final rootfs as a directory

export interface BuildRequest {
  /** The context as a local directory (the CLI and the API unpack `-`, tars and URLs into one first). */
  contextDir: string;
  /** The Dockerfile: a path (relative to the context or absolute), or its text (`-f -`). Default: Dockerfile, then Containerfile. */
  dockerfile?: { path?: string; text?: string };
  /** Names to tag the result with (`-t`, repeatable). */
  tags: string[];
  buildArgs: Record<string, string>;
  target?: string;
  noCache: boolean;
  /** --pull: always fetch FROM images ('always'); default 'missing'. */
  pull: 'always' | 'missing' | 'never';
  /** --platform (only the host's platform can run RUN steps here). */
  platform?: string;
  labels: Record<string, string>;
  secrets: BuildSecret[];
  /** --network for RUN steps: default (slirp4netns/pasta as `run`), none, host. */
  network: 'default' | 'none' | 'host';
  outputs: BuildOutput[];
}

/** What a build reports while it works (the CLI's progress display, the API's stream). */
export type BuildEvent =
  | { type: 'step'; stage: string; index: number; total: number; instruction: string } // a step starts
  | { type: 'cached'; stage: string; index: number } // ... and was a cache hit
  | { type: 'output'; stage: string; index: number; stream: 'stdout' | 'stderr'; data: Buffer } // a RUN's output, live
  | { type: 'done'; stage: string; index: number; seconds: number }
  | { type: 'pull'; image: string; message: string }; // FROM pulling its image

export interface BuildHooks extends Hooks {
  event?(e: BuildEvent): void;
}

export interface BuildReport {
  /** The image id (config digest); absent when only outputs other than 'image' were asked for. */
  imageId?: string;
  tags: string[];
  steps: number;
  cached: number;
}

/** Runs a build (ts/build/executor.ts); nothing is left behind when it fails or `signal` aborts it. */
export async function build(ctx: import('./context').EngineContext, req: BuildRequest, hooks: BuildHooks = {}, signal?: AbortSignal): Promise<BuildReport> {
  const { runBuild } = await import('../build/executor');
  const report = await runBuild(ctx, req, hooks, signal);
  if (report.imageId) {
    const { emitEvent } = await import('./events');
    // Docker's image events of a build: a `tag` for each name given.
    for (const t of req.tags) emitEvent(ctx, { Type: 'image', Action: 'tag', Actor: { ID: report.imageId, Attributes: { name: t } } });
    // Where the store keeps a squashfs per image (ts/storage/image-format.ts), the built one's.
    const { imageFormat } = await import('../storage/image-format');
    if (imageFormat(ctx.store).format === 'squashfs') await (await import('./squash')).keepStoreSquashes(ctx, [report.imageId], hooks);
  }
  return report;
}
