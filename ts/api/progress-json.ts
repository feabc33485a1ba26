/**
 * The engine's pull and push events (ts/image/progress.ts TransferEvent) as Docker's JSON
 * progress stream: one JSON object per line, as dockerd writes them (pkg/jsonmessage), which the
 * docker CLI and the SDKs read: `{"status":"Pulling from library/busybox","id":"latest"}`, per
 * layer `Pulling fs layer`, `Waiting`, `Downloading` with `progressDetail` and the `progress` bar,
 * `Verifying Checksum`, `Download complete`, `Extracting`, `Pull complete`, then `Digest: …` and
 * `Status: …`. Pure (no I/O): unit-tested in test/unit/progress-json.test.ts.
 */
import type { TransferEvent } from '../image/progress';

export interface JsonMessage {
  status?: string;
  id?: string;
  progressDetail?: { current?: number; total?: number };
  progress?: string;
  aux?: Record<string, unknown>;
  error?: string;
  errorDetail?: { message: string };
  stream?: string;
}

/** go-units HumanSize: decimal units, four significant digits (`1.235MB`, `528B`, `772.8kB`). */
export function humanSizeGo(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(4))}${units[i]}`;
}

/**
 * jsonmessage.JSONProgress.String() at dockerd's width (no terminal: 200 columns): a 50-column bar
 * and the counts, `[=====>       ]  1.2MB/3.4MB`.
 */
export function progressBar(current: number, total: number): string {
  if (total <= 0) return humanSizeGo(current).padStart(8);
  const pct = Math.min(50, Math.floor(Math.floor((current / total) * 100) / 2));
  const bar = `[${'='.repeat(pct)}>${' '.repeat(Math.max(0, 50 - pct))}] `;
  return `${bar}${humanSizeGo(current).padStart(8)}/${humanSizeGo(total)}`;
}

/** Docker's layer id in progress messages: the first 12 hex digits of the layer's digest. */
export const shortId = (digest: string): string => digest.replace(/^sha256:/, '').slice(0, 12);

/** The error line of a stream that already started (its 200 header is sent). */
export function errorMessage(message: string): JsonMessage {
  return { errorDetail: { message }, error: message };
}

/**
 * Translates one pull's or push's events. Downloading progress is thinned to about one message
 * per percent of a layer (a pull of a large layer would otherwise send thousands).
 */
export class DockerProgress {
  private readonly sent = new Map<string, number>();

  /** `name` is the image as Docker names it in the final status (`busybox:latest`). */
  constructor(private readonly name: string) {}

  translate(e: TransferEvent): JsonMessage[] {
    switch (e.type) {
      case 'start':
        // Docker says nothing before the registry answered (an error then is an HTTP status).
        if (e.op === 'push') {
          const at = e.ref.indexOf('@');
          const i = at >= 0 ? at : e.ref.lastIndexOf(':') > e.ref.lastIndexOf('/') ? e.ref.lastIndexOf(':') : e.ref.length;
          return [{ status: `The push refers to repository [${e.ref.slice(0, i)}]` }];
        }
        return [];
      case 'resolved':
        return [{ status: `Pulling from ${e.repository}`, id: e.tag }];
      case 'digest':
        return [{ status: `Digest: ${e.digest}` }];
      case 'pushed':
        return [
          { status: `${e.tag ?? 'latest'}: digest: ${e.digest} size: ${e.size}` },
          { progressDetail: {}, aux: { Tag: e.tag ?? '', Digest: e.digest, Size: e.size } },
        ];
      case 'layer': {
        const id = shortId(e.digest);
        switch (e.status) {
          case 'Waiting':
            return [
              { status: 'Pulling fs layer', progressDetail: {}, id },
              { status: 'Waiting', progressDetail: {}, id },
            ];
          case 'Downloading':
          case 'Pushing': {
            const current = e.current ?? 0;
            const total = e.total ?? 0;
            const last = this.sent.get(e.digest);
            const step = Math.max(1, Math.floor(total / 100));
            if (last !== undefined && current < total && current - last < step) return [];
            this.sent.set(e.digest, current);
            return [{ status: e.status, progressDetail: { current, total }, progress: progressBar(current, total), id }];
          }
          case 'Download complete':
            return [
              { status: 'Verifying Checksum', progressDetail: {}, id },
              { status: 'Download complete', progressDetail: {}, id },
            ];
          case 'Extracting': {
            const total = e.total ?? 0;
            return [{ status: 'Extracting', progressDetail: { current: e.current ?? total, total }, progress: progressBar(e.current ?? total, total), id }];
          }
          case 'Mounted':
            return [{ status: `Mounted from ${e.from ?? ''}`, progressDetail: {}, id }];
          default:
            return [{ status: e.status, progressDetail: {}, id }];
        }
      }
    }
  }

  /** The last line of a pull. */
  final(upToDate: boolean): JsonMessage {
    return { status: upToDate ? `Status: Image is up to date for ${this.name}` : `Status: Downloaded newer image for ${this.name}` };
  }
}
