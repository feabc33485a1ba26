/**
 * Typed errors with stable codes. Every failure burrow reports is a BurrowError; its code is
 * mapped once to an exit status here (Docker's convention) and, later, to HTTP statuses in the
 * API server. Codes from the Rust core arrive as the napi error's `code` and keep their name.
 */

/** Docker's exit statuses for failures of the engine itself (not of the container). */
export const EXIT = {
  /** burrow itself failed (bad flag, missing image, host problem). */
  ENGINE: 125,
  /** the container's command exists but cannot be invoked. */
  CANNOT_INVOKE: 126,
  /** the container's command was not found. */
  NOT_FOUND: 127,
} as const;

export type ErrorCode =
  | 'EUSAGE'
  | 'ENATIVE_MISSING'
  | 'ERUNTIME_MISSING'
  | 'EPROBE_INVALID'
  | 'EINTERNAL'
  | 'ECMD_CANNOT_INVOKE'
  | 'ECMD_NOT_FOUND'
  // store, layers and containers (ts/storage, ts/container)
  | 'EIMAGE_NOT_FOUND'
  | 'EIMAGE_IN_USE'
  | 'ELAYER_UNPACK'
  /** a layer entry that would write outside the layer (`..`, absolute, through a symlink, a hard link out, a `.wh..`) */
  | 'ELAYER_UNSAFE'
  /** a layer blob that is not a readable tar stream (truncated, bad compression) */
  | 'ELAYER_CORRUPT'
  | 'ESTORE_MISMATCH'
  /** a rootfs driver (given or the store's) that cannot work on this host; the message names the cause */
  | 'ESTORAGE_DRIVER'
  /** a store on a network filesystem whose layers cannot be kept on a local disk instead */
  | 'ESTORE_NETWORK'
  /** the container's user (`-u`, the image's USER) is not in its id map and user_fallback = "error" */
  | 'EUSER_UNMAPPED'
  | 'ECONTAINER_NOT_FOUND'
  | 'ECONTAINER_EXISTS'
  | 'ECONTAINER_STATE'
  // volumes and networks (ts/engine/volumes.ts, ts/engine/networks.ts)
  | 'EVOLUME_NOT_FOUND'
  /** a volume a container uses (`volume rm`) */
  | 'EVOLUME_IN_USE'
  | 'ENETWORK_NOT_FOUND'
  /** a network name already taken (`network create`) */
  | 'ENETWORK_EXISTS'
  /** a network with running containers (`network rm`), or one of the modes that always exist (bridge, host, none) */
  | 'ENETWORK_FORBIDDEN'
  | 'ERUNTIME'
  | 'ELIMIT_UNENFORCEABLE'
  // image references, manifests and registries (ts/image)
  | 'EREF_INVALID'
  | 'EMANIFEST_INVALID'
  | 'EMANIFEST_UNSUPPORTED'
  | 'EPLATFORM_NOT_FOUND'
  | 'EDIGEST_MISMATCH'
  | 'ESIZE_MISMATCH'
  | 'EAUTH_FILE'
  | 'ECREDENTIAL_HELPER'
  | 'EREGISTRY_AUTH'
  | 'EREGISTRY_NOT_FOUND'
  | 'EREGISTRY_UNREACHABLE'
  | 'EREGISTRY_TLS'
  | 'EREGISTRY'
  | 'ECANCELED'
  /** the config file (ts/config) cannot be read or does not parse; the message names the line */
  | 'ECONFIG';

export class BurrowError extends Error {
  readonly code: ErrorCode;
  /** What the user can do about it; printed on its own line. */
  readonly fix: string | undefined;

  constructor(code: ErrorCode, message: string, fix?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BurrowError';
    this.code = code;
    this.fix = fix;
  }

  get exitCode(): number {
    return exitCodeFor(this.code);
  }
}

export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case 'ECMD_CANNOT_INVOKE':
      return EXIT.CANNOT_INVOKE;
    case 'ECMD_NOT_FOUND':
      return EXIT.NOT_FOUND;
    default:
      return EXIT.ENGINE;
  }
}

/**
 * The HTTP status the Engine API answers for an error code (Docker's: 404 for what does not
 * exist, 409 for a conflict with the current state, 400 for bad input, 500 otherwise).
 */
export function httpStatusFor(code: ErrorCode): number {
  switch (code) {
    case 'EUSAGE':
    case 'EREF_INVALID':
    case 'ECONFIG':
      return 400;
    case 'EIMAGE_NOT_FOUND':
    case 'ECONTAINER_NOT_FOUND':
    case 'EREGISTRY_NOT_FOUND':
    case 'EPLATFORM_NOT_FOUND':
    case 'EVOLUME_NOT_FOUND':
    case 'ENETWORK_NOT_FOUND':
      return 404;
    case 'EIMAGE_IN_USE':
    case 'ECONTAINER_EXISTS':
    case 'ECONTAINER_STATE':
    case 'EVOLUME_IN_USE':
    case 'ENETWORK_EXISTS':
      return 409;
    case 'ENETWORK_FORBIDDEN':
      return 403;
    case 'EREGISTRY_AUTH':
      return 401;
    default:
      return 500;
  }
}

/**
 * The exit status of any failure, in one place: a BurrowError's code decides; anything else
 * (a bug, an unexpected system error) is burrow's own failure.
 */
export function exitStatus(err: unknown): number {
  return err instanceof BurrowError ? err.exitCode : EXIT.ENGINE;
}

/**
 * How the CLI prints an error, the same for every command: Docker's `Error: ` and the message,
 * then what to do about it on a line of its own.
 */
export function errorText(err: unknown): string {
  const e = toBurrowError(err);
  return `Error: ${e.message}\n${e.fix ? `fix: ${e.fix}\n` : ''}`;
}

/**
 * What burrow-runtime wrote on stderr, in the CLI's voice. Its errors are runc's logrus lines
 * (`time="..." level=error msg="..."`, what podman and containerd read): the message alone. Its
 * other lines lose the runtime's name and level (`burrow-runtime: `, `burrow-runtime unpack: `,
 * `burrow-runtime: error: `), which the CLI's own prefix replaces.
 */
export function runtimeText(stderr: string): string {
  return stderr
    .split('\n')
    .map((l) => {
      const m = /^time="[^"]*" level=\w+ msg="((?:[^"\\]|\\.)*)"/.exec(l);
      if (m) return m[1]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : c));
      return l.replace(/^burrow-runtime(?: [a-z-]+)?: (?:error: )?/, '');
    })
    .join('\n')
    .trim();
}

/** A write to a pipe whose reader has gone (`burrow save IMG | head -c 10`). */
export function isBrokenPipe(err: unknown): boolean {
  for (let e = err, i = 0; e && typeof e === 'object' && i < 5; e = (e as { cause?: unknown }).cause, i++) {
    if ((e as NodeJS.ErrnoException).code === 'EPIPE' || (e as NodeJS.ErrnoException).code === 'ERR_STREAM_DESTROYED') return true;
  }
  return false;
}

/** Normalises anything thrown into a BurrowError, keeping the original as `cause`. */
export function toBurrowError(err: unknown): BurrowError {
  if (err instanceof BurrowError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new BurrowError('EINTERNAL', message, undefined, { cause: err });
}
